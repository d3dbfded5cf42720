"""Someone on the clinic's Wi-Fi listens to the reception's traffic with the agent. On
plain http the staff name, the PIN and the session cookie crossed the network in clear.
With the site's certificate configured the pages are https only: a plain-http request to
the port gets no page at all (so no login form is shown and no PIN is posted in clear),
the session cookie is Secure (a browser never sends it over http), and a certificate the
agent cannot load stops the pages rather than falling back to plain http."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest

from tests.integration.test_edge_agent import eventually
from tests.integration.test_edge_clinic_staff_login import (
    CALL_NEXT,
    NAME,
    PIN,
    STAFF,
    STAFF_PINS,
    log_in,
    staff_desk,
)


async def plain_http(port: int, request: bytes) -> bytes:
    """What comes back to ``request`` sent in clear to the pages' port."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


async def test_with_the_sites_certificate_plain_http_gets_no_page(tmp_path: Path) -> None:
    async with staff_desk(tmp_path, staff=STAFF_PINS) as d:
        assert d.url.startswith("https://")
        port = d.pages.port
        assert port is not None
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as browser:
            for path in ("/staff/login", STAFF, "/"):
                with pytest.raises(httpx.TransportError):
                    await browser.get(path)
        form = f"name={NAME}&pin={PIN}&next=%2Fstaff".encode()
        login = (
            b"POST /staff/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: " + str(len(form)).encode() + b"\r\n\r\n" + form
        )
        answer = await plain_http(port, login)
        assert not answer.startswith(b"HTTP/")  # no page, no session cookie
        assert b"Set-Cookie" not in answer

        async with d.client() as reception:  # over https, the same PIN works
            logged_in = await log_in(reception)
            assert logged_in.status_code == 303
            assert "; secure" in logged_in.headers["set-cookie"].lower()
            called = await reception.post("/staff", data=CALL_NEXT)
            assert called.status_code == 303
    assert d.room_1() == ["A-001"]


async def test_a_certificate_the_agent_cannot_load_stops_the_pages_not_https(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    missing = {"tls_cert": str(tmp_path / "none.crt"), "tls_key": str(tmp_path / "none.key")}
    async with staff_desk(tmp_path, https=False, listen=False, staff=STAFF_PINS, **missing) as d:
        await eventually("the agent says why", lambda: "cannot serve https" in caplog.text)
        assert (d.pages.port, d.pages.listening.is_set()) == (None, False)
    assert "clinic pages: cannot serve https with [clinic] tls_cert" in caplog.text
    assert "check that both exist, are PEM, belong together" in caplog.text
    assert "clinic pages on http://" not in caplog.text


async def test_without_a_certificate_the_agent_warns_that_pins_cross_in_clear(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with staff_desk(tmp_path, https=False, staff=STAFF_PINS) as d:
        await eventually("the warning", lambda: "plain http" in caplog.text)
        assert d.url.startswith("http://")
    assert "PINs and session cookies cross the clinic network in clear" in caplog.text
