"""`make run`'s launcher, tried as a new user would: start it, paste the curl it prints and the
README's, see the notification arrive, stop it with SIGTERM and find nothing left running."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.devices import Device, poll
from tests.harness import ROOT, free_port

pytestmark = pytest.mark.e2e


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def readme_block(marker: str, language: str) -> str:
    text = (ROOT / "README.md").read_text()
    block = text.split(f"<!-- {marker} -->", 1)[1].split(f"<!-- /{marker} -->", 1)[0]
    return block.split(f"```{language}", 1)[1].split("```", 1)[0]


def readme_send_example() -> str:
    return readme_block("send-example", "bash")


async def test_launcher_prints_a_curl_that_delivers_and_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env.update({"TIDINGS_PORT": str(port), "PYTHONPATH": str(ROOT), "TIDINGS_LOG_LEVEL": "warning"})
    log = tmp_path / "launcher.log"
    with log.open("wb") as out:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "service", "run"], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while "Watch alice's live stream" not in log.read_text():
            assert launcher.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.1)
        banner = log.read_text()
        redis_port = int(re.search(r"embedded Redis on redis://127.0.0.1:(\d+)", banner).group(1))  # type: ignore[union-attr]
        user_token = banner.split("user token for 'alice' (24 h):", 1)[1].split()[0]
        printed_curl = re.search(r"(  curl -sS -X POST .*?}')\n", banner, re.S).group(1)  # type: ignore[union-attr]

        device = await Device.connect(f"ws://127.0.0.1:{port}/v1/stream", user_token)
        ids = []
        for command in (printed_curl, readme_send_example().replace("127.0.0.1:8000", f"127.0.0.1:{port}")):
            result = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=30)
            assert result.returncode == 0, result.stderr
            answer = json.loads(result.stdout)
            assert answer["status"] == "accepted", answer
            ids.append(answer["id"])
        entries = await device.wait_notifications(2)
        assert [e["id"] for e in entries] == ids
        assert entries[0]["title"] == "Hello, Alice"
        page = (await poll(f"http://127.0.0.1:{port}", user_token)).json()
        assert [e["id"] for e in page["items"]] == ids
        # The README's SDK example, as a user would run it (our interpreter for .venv/bin/python).
        example = readme_block("sdk-example", "python").replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        example = example.replace('".venv/bin/python"', repr(sys.executable))
        result = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "3 New comment", result.stdout
        entries = await device.wait_notifications(3)
        assert entries[-1]["title"] == "New comment" and entries[-1]["data"] == {"post": 7}
        # The second SDK example runs on the first one's set-up (URL, API_KEY, alice_token).
        setup = example.split("async def main", 1)[0]
        inbox_example = setup + readme_block("sdk-inbox-example", "python")
        result = subprocess.run([sys.executable, "-c", inbox_example], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        scheduled, cancelled, counts = result.stdout.strip().splitlines()
        assert (scheduled, cancelled) == ("scheduled", "cancelled"), result.stdout
        assert int(counts.split()[0]) >= 3, result.stdout  # alice's three entries, at least, are read now
        await device.close()
        assert (tmp_path / "var" / "dev.env").exists()
    finally:
        launcher.send_signal(signal.SIGTERM)
        code = launcher.wait(30)
    assert code == 0, log.read_text()
    assert "tidings stopped" in log.read_text()
    assert not _port_open(port), "the service outlived the launcher"
    assert not _port_open(redis_port), "the embedded Redis outlived the launcher"
