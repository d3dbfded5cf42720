"""Attack: someone on the path between a Pi and the cloud (the gym's Wi-Fi, a hotel
network, a rogue switch) reads plain http. A technician who types ``--cloud http://…``
would hand them the enrollment token and the Pi's certificate. ``denen provision enroll``
refuses plain http except to this very machine, says what to type instead, and sends
nothing: the token still works afterwards, and the cloud saw no request."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from cloud.app import create_app
from protocol.clock import ManualClock
from provisioning import pki
from provisioning.cli import main as denen
from tests.security.conftest import settings_for


def token_file(directory: Path, token: str) -> str:
    """The token in a file only its owner reads, as a technician passes it (--token-file)."""
    path = directory / "enrollment-token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return str(path)


def lan_address() -> str:
    """This machine's address on its network (not loopback), as a Pi would dial it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the route
        address: str = s.getsockname()[0]
    assert not address.startswith("127."), "the test needs a non-loopback interface"
    return address


class Recorder:
    """The app, noting every HTTP request that reaches it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests: list[tuple[str, str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.requests.append((scope["method"], scope["path"]))
        await self.app(scope, receive, send)


@contextlib.asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[int]:
    """Serve ``app`` on every interface; its port."""
    server = uvicorn.Server(uvicorn.Config(app, host="0.0.0.0", port=0, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    try:
        yield int(server.servers[0].sockets[0].getsockname()[1])
    finally:
        server.should_exit = True
        await task


async def test_enroll_refuses_plain_http_to_another_machine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time()
    ca = pki.init_ca(tmp_path / "ca", now=dt.datetime.fromtimestamp(now, dt.UTC))
    settings = settings_for(tmp_path, ca_cert_path=ca.ca_cert, ca_key_path=ca.ca_key)
    app = create_app(settings, clock=ManualClock(now))
    recorder = Recorder(app)
    async with serving(recorder) as port:
        token = app.state.services.enrollment.create_token("gym-a", "gw-1", "ops").token
        out = tmp_path / "etc"
        common = [
            "--token-file",
            token_file(tmp_path, token),
            "--out",
            str(out),
            "--state-dir",
            str(tmp_path / "state"),
        ]
        url = f"http://{lan_address()}:{port}"

        status = await asyncio.to_thread(denen, ["provision", "enroll", *common, "--cloud", url])

        assert status == 1
        err = capsys.readouterr().err
        assert "refusing plain http" in err
        assert f"https://{lan_address()}:{port}" in err  # what to type instead
        assert "Nothing was sent" in err
        assert recorder.requests == []
        assert not out.exists()

        # the same token, to a cloud on this machine, still works: it was never spent
        local = f"http://127.0.0.1:{port}"
        status = await asyncio.to_thread(denen, ["provision", "enroll", *common, "--cloud", local])
        assert status == 0, capsys.readouterr().err
        assert (out / "gateway.crt").exists()
        assert ("POST", "/api/enroll") in recorder.requests
