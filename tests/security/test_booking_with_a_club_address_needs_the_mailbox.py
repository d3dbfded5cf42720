"""Attack: book with a registered club's email address to be auto-approved and read the
PIN off the booking's own status page. A booking counts only once the link mailed to
its address was opened: until then no PIN exists and no lock hears of it; unconfirmed,
it lapses and frees the slot. Only the club's mailbox (a real SMTP server) has the link."""

from __future__ import annotations

from typing import Any

from tests.security.conftest import HOUR, NOW, Mailed
from tests.support.confirm_mail import follow, link_in_inbox, press

CLUB = "club@example.jp"
TEN = NOW + HOUR


async def _register_club(mailed: Mailed) -> None:
    cloud = mailed.cloud
    r = await cloud.http.post(
        f"/api/facilities/{cloud.seed.facility_id}/groups",
        json={"name": "Kaike Volleyball Club", "email": CLUB},
        headers=cloud.as_user("manager"),
    )
    assert r.status_code == 201, r.text


async def _book_as_the_club(mailed: Mailed) -> dict[str, Any]:
    body = {"room_id": mailed.cloud.seed.room_id, "name": "Not the club", "email": CLUB}
    r = await mailed.cloud.http.post(
        "/api/reservations", json={**body, "start": TEN, "end": TEN + HOUR}
    )
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


def _snapshot_grants(mailed: Mailed) -> list[str]:
    seed = mailed.cloud.seed
    snap = mailed.cloud.app.state.services.access.snapshot(seed.site, seed.gateway)
    return [g.grant_id for lock in snap.locks for g in lock.grants]


async def test_a_booking_with_the_clubs_address_gets_no_pin_without_the_clubs_mailbox(
    mailed: Mailed,
) -> None:
    await _register_club(mailed)
    created = await _book_as_the_club(mailed)
    assert created["status"] == "unconfirmed"
    assert created["decided_by"] is None
    assert f"sent to {CLUB}" in created["message"]

    # the attacker's own status link shows no PIN, and no lock was told of one
    status = await mailed.cloud.http.get(
        f"/api/reservations/{created['id']}", params={"token": created["access_token"]}
    )
    assert (status.json()["status"], status.json()["pin"]) == ("unconfirmed", None)
    assert _snapshot_grants(mailed) == []

    # the link cannot be guessed from what the attacker holds, nor read by staff
    for token in (created["access_token"], f"{NOW + 1800}.{'0' * 32}", "x"):
        forged = await mailed.cloud.http.post(
            f"/api/reservations/{created['id']}/confirm", json={"token": token}
        )
        assert forged.status_code == 404, forged.text
    mailed.deliver()
    ops_mail = await mailed.cloud.http.get("/api/mail", headers=mailed.cloud.as_user("ops"))
    assert "/confirm?t=" not in ops_mail.text
    link = link_in_inbox(mailed.smtp.inbox, CLUB, created["id"])  # only the club has it
    assert link.token not in ops_mail.text

    # nobody confirms: after 30 minutes the booking lapses and the slot is free again
    mailed.cloud.app.state.clock.advance(30 * 60)
    assert mailed.cloud.app.state.services.confirmations.expire_due() == 1
    status = await mailed.cloud.http.get(
        f"/api/reservations/{created['id']}", params={"token": created["access_token"]}
    )
    assert (status.json()["status"], status.json()["pin"]) == ("cancelled", None)
    late = await press(mailed.cloud.http, link)
    assert late.status_code == 409
    assert "this link expired" in late.text
    assert _snapshot_grants(mailed) == []
    again = await mailed.cloud.http.post(
        "/api/reservations",
        json={
            "room_id": mailed.cloud.seed.room_id,
            "name": "Taro",
            "email": "taro@example.jp",
            "start": TEN,
            "end": TEN + HOUR,
        },
    )
    assert again.status_code == 201, again.text


async def test_the_club_confirms_from_its_mailbox_and_gets_its_pin_by_mail(
    mailed: Mailed,
) -> None:
    await _register_club(mailed)
    created = await _book_as_the_club(mailed)
    mailed.deliver()
    link = link_in_inbox(mailed.smtp.inbox, CLUB, created["id"])
    confirmed = await follow(mailed.cloud.http, link)
    assert confirmed.status_code == 200
    assert "Your booking is confirmed and approved" in confirmed.text
    assert 'data-testid="pin"' not in confirmed.text  # the link's page shows no PIN
    assert len(_snapshot_grants(mailed)) == 1
    mailed.deliver()
    (pin_mail,) = [m for m in mailed.smtp.inbox.messages if m["Subject"].startswith("Your PIN")]
    status = await mailed.cloud.http.get(
        f"/api/reservations/{created['id']}", params={"token": created["access_token"]}
    )
    assert status.json()["status"] == "approved"
    assert f"PIN: {status.json()['pin']}" in str(pin_mail.get_payload(decode=True), "utf-8")
    # the link is single-use: a second press changes nothing
    again = await press(mailed.cloud.http, link)
    assert "This booking is confirmed already" in again.text
    assert len(_snapshot_grants(mailed)) == 1
