"""Attack: an impostor cloud (a mistyped or spoofed ``--cloud``, a DNS or Wi-Fi trick)
answers enrollment with a CA of its own and signs whatever the Pi sends. A Pi that trusts
the first CA it is shown would then take its orders from the impostor's broker, and hand
over the token. The token pins the city's CA: ``denen provision enroll`` fetches the CA,
finds it is not the pinned one, and stops before the token leaves the Pi."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import uvicorn

from cloud.app import create_app
from protocol import certs
from protocol.clock import ManualClock
from provisioning import pki
from provisioning.cli import main as denen
from tests.security.conftest import settings_for


class Impostor(ThreadingHTTPServer):
    """A cloud that looks like Denen's, with its own CA; it notes what it is sent."""

    def __init__(self, ca: pki.CaFiles) -> None:
        super().__init__(("127.0.0.1", 0), _ImpostorHandler)
        self.ca = pki.load_ca(ca)
        self.received: list[dict[str, str]] = []


class _ImpostorHandler(BaseHTTPRequestHandler):
    server: Impostor

    def do_GET(self) -> None:
        self._json({"ca_pem": certs.cert_pem(self.server.ca.cert).decode()})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.received.append(body)
        now = dt.datetime.now(dt.UTC)
        cert = self.server.ca.sign_csr(body["csr_pem"].encode(), "gym-a.gw-1", now=now, days=30)
        self._json(
            {
                "certificate_pem": certs.cert_pem(cert).decode(),
                "ca_pem": certs.cert_pem(self.server.ca.cert).decode(),
                "site": "gym-a",
                "gateway": "gw-1",
                "mqtt_host": "mqtt.impostor.example",
                "mqtt_port": 8883,
            }
        )

    def _json(self, data: dict[str, object]) -> None:
        raw = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *_args: object) -> None:
        pass


def token_file(directory: Path, token: str) -> str:
    """The token in a file only its owner reads, as a technician passes it (--token-file)."""
    path = directory / "enrollment-token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return str(path)


@contextlib.contextmanager
def impostor(directory: Path, *, https: bool) -> Iterator[tuple[Impostor, str]]:
    ca = pki.init_ca(directory, days=30)  # a CA, a server certificate for localhost
    server = Impostor(ca)
    if https:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(ca.server_cert, ca.server_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        where = "https://localhost" if https else "http://127.0.0.1"  # http: loopback only
        yield server, f"{where}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def city_token(tmp_path: Path) -> str:
    """A token from the city's own cloud (it pins the city's CA)."""
    ca = pki.init_ca(tmp_path / "city-ca", days=30)
    app = create_app(
        settings_for(tmp_path, ca_cert_path=ca.ca_cert, ca_key_path=ca.ca_key),
        clock=ManualClock(time.time()),
    )
    async with app.router.lifespan_context(app):
        token: str = app.state.services.enrollment.create_token("gym-a", "gw-1", "ops").token
    return token


@pytest.mark.parametrize("https", [False, True], ids=["http", "https"])
async def test_enroll_refuses_a_cloud_with_another_ca(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], https: bool
) -> None:
    token = await city_token(tmp_path)
    out = tmp_path / "etc"
    with impostor(tmp_path / "impostor-ca", https=https) as (server, url):
        args = [
            "provision",
            "enroll",
            "--token-file",
            token_file(tmp_path, token),
            "--cloud",
            url,
            "--out",
            str(out),
        ]
        status = await asyncio.to_thread(denen, [*args, "--state-dir", str(tmp_path / "s")])
    assert status == 1
    err = capsys.readouterr().err
    assert "another CA than the one this token was made for" in err
    assert "the token was not sent" in err
    assert server.received == []  # the token never left the Pi
    assert not out.exists()


def test_an_old_token_without_a_pin_is_refused_with_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with impostor(tmp_path / "impostor-ca", https=False) as (server, url):
        args = [
            "provision",
            "enroll",
            "--token-file",
            token_file(tmp_path, "denen-enroll-" + "x" * 32),
            "--cloud",
            url,
        ]
        assert denen([*args, "--out", str(tmp_path / "etc")]) == 1
    assert "ask city operations to issue a new token" in capsys.readouterr().err.lower()
    assert server.received == []


async def test_the_citys_own_cloud_over_https_is_trusted_through_the_pin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The control: the city's cloud, its https certificate from the city's CA (which no
    system trust store knows), enrolls the Pi because the token pins that CA."""
    now = time.time()
    ca = pki.init_ca(tmp_path / "ca", now=dt.datetime.fromtimestamp(now, dt.UTC))
    app = create_app(
        settings_for(tmp_path, ca_cert_path=ca.ca_cert, ca_key_path=ca.ca_key),
        clock=ManualClock(now),
    )
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        ssl_certfile=str(ca.server_cert),
        ssl_keyfile=str(ca.server_key),
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    try:
        port = server.servers[0].sockets[0].getsockname()[1]
        token = app.state.services.enrollment.create_token("gym-a", "gw-1", "ops").token
        out = tmp_path / "etc"
        args = [
            "provision",
            "enroll",
            "--token-file",
            token_file(tmp_path, token),
            "--cloud",
            f"https://localhost:{port}",
        ]
        status = await asyncio.to_thread(denen, [*args, "--out", str(out)])
    finally:
        server.should_exit = True
        await task
    assert status == 0, capsys.readouterr().err
    assert (out / "ca.crt").read_bytes() == ca.ca_cert.read_bytes()
