"""Attack: a copy of the database (a backup, a leaked file) hands over every PIN that
opens a gym door. Slot PINs are stored sealed with a key derived from the cloud's secret
key; the database file, read byte by byte, holds no PIN once its mail was sent. The
citizen's booking page still shows the PIN, and the lock still gets its keyed tag."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from protocol.pin import pin_tag
from tests.security.conftest import HOUR, NOW, Mailed
from tests.support.confirm_mail import follow, link_in_inbox

TEN = NOW + HOUR


def _read_the_file(tmp_path: Path) -> tuple[list[tuple[object, ...]], bytes]:
    """The grants' rows as SQLite has them, and every byte of the database's files."""
    with sqlite3.connect(tmp_path / "cloud.db") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        grants = conn.execute("SELECT * FROM access_grants").fetchall()
    return grants, b"".join(p.read_bytes() for p in sorted(tmp_path.glob("cloud.db*")))


async def test_the_database_file_holds_no_pin(mailed: Mailed, tmp_path: Path) -> None:
    cloud = mailed.cloud
    body = {"room_id": cloud.seed.room_id, "name": "Taro", "email": "taro@example.jp"}
    pins: list[str] = []
    for i in range(3):  # a few, so that a PIN is not missed by luck
        start = TEN + i * HOUR
        r = await cloud.http.post(
            "/api/reservations", json={**body, "start": start, "end": start + HOUR}
        )
        assert r.status_code == 201, r.text
        created = r.json()
        mailed.deliver()
        link = link_in_inbox(mailed.smtp.inbox, "taro@example.jp", created["id"])
        assert (await follow(cloud.http, link)).status_code == 200
        approved = await cloud.http.post(
            f"/api/reservations/{created['id']}/approve", headers=cloud.as_user("manager")
        )
        assert approved.status_code == 200, approved.text
        status = await cloud.http.get(
            f"/api/reservations/{created['id']}", params={"token": created["access_token"]}
        )
        pins.append(str(status.json()["pin"]))
    mailed.deliver()
    assert all(len(pin) == 6 for pin in pins)

    grants, raw = _read_the_file(tmp_path)
    assert len(grants) == 3
    for pin in pins:
        assert not any(pin in str(value) for row in grants for value in row)
        assert pin.encode() not in raw, "a PIN is readable in the database file"

    # the lock's snapshot still carries each PIN's keyed tag
    snap = cloud.app.state.services.access.snapshot(cloud.seed.site, cloud.seed.gateway)
    key = bytes.fromhex(cloud.seed.pin_key)
    assert sorted(g.tag for g in snap.locks[0].grants) == sorted(
        pin_tag(key, pin).hex() for pin in pins
    )
