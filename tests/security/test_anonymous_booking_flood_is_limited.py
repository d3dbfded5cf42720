"""Attack: a script books without a login, over and over, to fill a gym's calendar with
held slots and to mail confirmation requests to any address. A client address books at
most ``booking_limit_per_address`` times an hour and a facility takes at most
``booking_limit_per_facility``; then 429 says (Japanese first) when to try again. A
forged X-Forwarded-For counts only behind a proxy named in ``trusted_proxies``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.security.conftest import HOUR, NOW, Cloud, serving, settings_for

TEN = NOW + HOUR


def _slot(cloud: Cloud, i: int, **kw: Any) -> dict[str, Any]:
    return {
        "room_id": cloud.seed.room_id,
        "name": f"bot {i}",
        "email": f"victim{i}@example.jp",
        "start": TEN + i * HOUR,
        "end": TEN + (i + 1) * HOUR,
        **kw,
    }


async def _book(cloud: Cloud, i: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return await cloud.http.post("/api/reservations", json=_slot(cloud, i), headers=headers)


async def test_one_address_books_ten_an_hour_then_is_told_when_to_come_back(
    cloud: Cloud,
) -> None:
    for i in range(10):
        assert (await _book(cloud, i)).status_code == 201
    refused = await _book(cloud, 10)
    assert refused.status_code == 429
    detail = refused.json()["detail"]
    assert detail.startswith(
        "このアドレスからの予約が多すぎます。60 分後にもう一度お試しください。"
    )
    assert "Too many bookings from your address in the last hour; try again in 60 minutes" in detail
    # a header the client writes itself changes nothing without a trusted proxy
    spoofed = await _book(cloud, 11, headers={"X-Forwarded-For": "198.51.100.7"})
    assert spoofed.status_code == 429
    # the booking page says the same, and keeps what was typed
    page = await cloud.http.post(
        "/book",
        data={
            "room_id": str(cloud.seed.room_id),
            "name": "bot",
            "email": "page@example.jp",
            "day": "2027-01-16",
            "start": "10:00",
            "hours": "1",
        },
        headers={"Accept-Language": "ja"},
    )
    assert page.status_code == 429
    assert "このアドレスからの予約が多すぎます" in page.text
    assert 'value="page@example.jp"' in page.text
    staff = await cloud.http.get("/api/reservations", headers=cloud.as_user("manager"))
    assert len(staff.json()) == 10
    # an hour after those bookings, the address may book again
    cloud.app.state.clock.advance(HOUR)
    assert (await _book(cloud, 12)).status_code == 201


async def test_a_refused_booking_takes_no_place_in_the_limit(cloud: Cloud) -> None:
    for i in range(12):  # a citizen's typing errors: the slot ends before it starts
        bad = await cloud.http.post(
            "/api/reservations", json=_slot(cloud, i, end=TEN + i * HOUR - 60)
        )
        assert bad.status_code == 400
    assert (await _book(cloud, 0)).status_code == 201


async def test_behind_a_trusted_proxy_each_client_and_the_facility_are_counted(
    tmp_path: Path,
) -> None:
    settings = settings_for(
        tmp_path, trusted_proxies=["127.0.0.1/32"], booking_limit_per_facility=12
    )
    async with serving(settings) as cloud:
        # the proxy appends the client it saw; what the client wrote before is not believed
        for i in range(10):
            via = {"X-Forwarded-For": f"198.51.100.{i}, 203.0.113.1"}
            assert (await _book(cloud, i, via)).status_code == 201
        refused = await _book(cloud, 10, {"X-Forwarded-For": "198.51.100.99, 203.0.113.1"})
        assert refused.status_code == 429
        assert "from your address" in refused.json()["detail"]
        # other clients may book, up to the facility's limit for the hour
        for i in (10, 11):
            assert (await _book(cloud, i, {"X-Forwarded-For": f"203.0.113.{i}"})).status_code == 201
        full = await _book(cloud, 12, {"X-Forwarded-For": "203.0.113.50"})
        assert full.status_code == 429
        assert full.json()["detail"].startswith("この施設からの予約が多すぎます。")
        assert "for this facility" in full.json()["detail"]
