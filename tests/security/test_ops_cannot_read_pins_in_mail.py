"""Attack: ops (or whoever holds an ops login) reads citizens' PINs in the mail outbox,
through ``GET /api/mail`` or the ``/mail`` page, or the booking links that show them. The
PIN and the booking link are the citizen's alone: staff read those mails blanked, with
and without SMTP; once the SMTP server took a mail, the stored copy keeps no PIN. The
citizen still gets the PIN in the mail and on the booking page."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from cloud.core.models import MailMessage
from tests.security.conftest import HOUR, NOW, Cloud, Mailed
from tests.support.cloud import log_in
from tests.support.confirm_mail import confirm_by_mail, follow, link_in_inbox

TEN = NOW + HOUR


async def _book(cloud: Cloud) -> dict[str, Any]:
    body = {"room_id": cloud.seed.room_id, "name": "Taro", "email": "taro@example.jp"}
    r = await cloud.http.post("/api/reservations", json={**body, "start": TEN, "end": TEN + HOUR})
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


async def _approve_and_read_pin(cloud: Cloud, created: dict[str, Any]) -> str:
    r = await cloud.http.post(
        f"/api/reservations/{created['id']}/approve", headers=cloud.as_user("manager")
    )
    assert r.status_code == 200, r.text
    page = await cloud.http.get(f"/r/{created['id']}", params={"token": created["access_token"]})
    status = await cloud.http.get(
        f"/api/reservations/{created['id']}", params={"token": created["access_token"]}
    )
    pin = str(status.json()["pin"])
    assert f'data-testid="pin">{pin}<' in page.text  # the citizen's own page shows it
    return pin


async def _ops_reads_everything(cloud: Cloud) -> str:
    api = await cloud.http.get("/api/mail", headers=cloud.as_user("ops"))
    assert api.status_code == 200
    assert any(m["subject"].startswith("Your PIN for") for m in api.json())
    await log_in(cloud.http, cloud.app.state.clock, "ops", cloud.seed.users["ops"].password)
    page = await cloud.http.get("/mail")
    assert page.status_code == 200
    return api.text + page.text


async def test_the_demo_mailbox_shows_ops_no_pin_and_no_booking_link(cloud: Cloud) -> None:
    created = await _book(cloud)
    await confirm_by_mail(cloud.http, cloud.app.state.sessions, "taro@example.jp", created["id"])
    pin = await _approve_and_read_pin(cloud, created)
    seen = await _ops_reads_everything(cloud)
    assert "PIN: [" in seen  # the mail is there, its PIN blanked
    assert f"PIN: {pin}" not in seen
    assert created["access_token"] not in seen


async def test_with_smtp_the_citizen_gets_the_pin_and_no_copy_keeps_it(mailed: Mailed) -> None:
    cloud = mailed.cloud
    created = await _book(cloud)
    mailed.deliver()
    link = link_in_inbox(mailed.smtp.inbox, "taro@example.jp", created["id"])
    assert (await follow(cloud.http, link)).status_code == 200
    pin = await _approve_and_read_pin(cloud, created)
    mailed.deliver()
    (pin_mail,) = [m for m in mailed.smtp.inbox.messages if m["Subject"].startswith("Your PIN")]
    assert f"PIN: {pin}" in str(pin_mail.get_payload(decode=True), "utf-8")
    seen = await _ops_reads_everything(cloud)
    assert pin not in seen
    assert created["access_token"] not in seen
    with cloud.app.state.sessions() as session:
        kept = session.scalars(select(MailMessage.body)).all()
    assert len(kept) == 3  # confirm, received, PIN
    assert not [body for body in kept if pin in body or created["access_token"] in body]
