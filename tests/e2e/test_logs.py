"""User tokens never reach the service's log, uvicorn's access lines included."""

from __future__ import annotations

import asyncio

import pytest

from tests.devices import Device, poll, token
from tests.harness import Deployment, Service, running

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_tokens_in_urls_are_redacted_from_every_log_line(deployment: Deployment) -> None:
    service = Service(deployment, TIDINGS_LOG_LEVEL="info")
    secrets = [token("kim"), token("kim", ttl_s=7200), token("kim", ttl_s=100)]
    with running(service):
        await service.wait_ready_async()
        for name, secret in zip(("token", "%74oken", "TOKEN"), secrets, strict=True):
            try:
                device = await Device.connect(f"{service.ws_url}?{name}={secret}", None, wait_ready=False)
                await asyncio.sleep(0.3)
                await device.close()
            except Exception:  # noqa: BLE001 - a refused spelling is fine; only the log matters here
                pass
        await poll(service.url, secrets[0], token=secrets[0])
        await asyncio.sleep(0.3)
        output = service.output()
    assert "/v1/stream?" in output, "the access log was not written; the test proves nothing"
    for secret in secrets:
        assert secret not in output
        assert secret.split(".")[2] not in output  # not even the signature
