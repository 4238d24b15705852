"""A device that stops reading is cut off (4008), instead of holding the server's send forever."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time

import httpx
import pytest

from tests.devices import send, token, wait_delivered
from tests.harness import Deployment, Service, Worker, running

pytestmark = pytest.mark.e2e


def masked_text_frame(text: str) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    header = b"\x81" + (bytes([0x80 | len(payload)]) if len(payload) < 126 else b"\xfe" + struct.pack(">H", len(payload)))
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def open_and_never_read(port: int, auth: str) -> socket.socket:
    """A WebSocket client that authenticates and then never reads again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fixed and small: no autotuning
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert b"101" in sock.recv(1024).split(b"\r\n", 1)[0]
    sock.sendall(masked_text_frame(auth))
    return sock


def connection_state(sock: socket.socket, timeout: float) -> str:
    """Read everything still buffered: ``closed`` once the server ended the connection."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sock.recv(1 << 20):
                return "closed"
    except ConnectionResetError:
        return "closed"
    except TimeoutError:
        return "open"
    return "open"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_device_that_stops_reading_is_closed_as_too_slow(deployment: Deployment) -> None:
    service = Service(deployment, TIDINGS_SEND_TIMEOUT_S="1", TIDINGS_PING_INTERVAL_S="60")
    worker = Worker(deployment)
    with running(service, worker):
        await service.wait_ready_async()
        stuck = open_and_never_read(service.port, json.dumps({"type": "auth", "token": token("lee")}))
        await asyncio.sleep(0.5)
        blob = "x" * 200_000
        ids = [(await send(service.url, ["lee"], f"n{i}", data={"blob": blob})).json()["id"] for i in range(40)]
        await wait_delivered(service.url, ids[-1])
        # Still not reading: the server must give up on its own, within the send timeout and a bit.
        deadline = time.monotonic() + 6
        while (streams := await gauge(service.url, "tidings_streams")) > 0:
            assert time.monotonic() < deadline, "the server still holds a stream whose socket stopped draining"
            await asyncio.sleep(0.1)
        assert await gauge(service.url, 'tidings_streams_closed_total{code="4008"}') == 1
        state = await asyncio.to_thread(connection_state, stuck, 15)
        stuck.close()
        assert service.alive()
    assert streams == 0
    assert state == "closed", "the TCP connection was left open"


async def gauge(base_url: str, name: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{base_url}/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def server_connections(port: int) -> int:
    """Established TCP connections whose server side is 127.0.0.1:``port`` (from /proc/net/tcp)."""
    local = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as table:
        return sum(1 for row in table.read().splitlines()[1:] if row.split()[1] == local and row.split()[3] == "01")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_socket_that_never_drains_again_is_released_by_the_service(deployment: Deployment) -> None:
    """A close cannot flush to a peer that advertises a zero window, so without a bound the
    service would hold the socket, its fd and megabytes of kernel buffer until the peer leaves."""
    service = Service(deployment, TIDINGS_SEND_TIMEOUT_S="1", TIDINGS_PING_INTERVAL_S="1")
    worker = Worker(deployment)
    with running(service, worker):
        await service.wait_ready_async()
        stuck = open_and_never_read(service.port, json.dumps({"type": "auth", "token": token("zed")}))
        await asyncio.sleep(0.5)
        assert server_connections(service.port) == 1
        blob = "x" * 200_000
        ids = [(await send(service.url, ["zed"], f"n{i}", data={"blob": blob})).json()["id"] for i in range(40)]
        await wait_delivered(service.url, ids[-1])
        # Never read again: the service must let the socket go on its own (send timeout 1 s,
        # then at most 1 + 2 x 1 s of unacknowledged data before the kernel cuts it).
        started = time.monotonic()
        while server_connections(service.port) > 0:
            assert time.monotonic() - started < 20, "the service still holds the socket of a peer that never reads"
            await asyncio.sleep(0.2)
        released_after = time.monotonic() - started
        stuck.close()
    print(f"\nstuck socket released {released_after:.1f} s after the last send")
