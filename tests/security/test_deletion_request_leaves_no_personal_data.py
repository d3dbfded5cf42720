"""Attack (on the citizen's rights): a citizen asks the city to delete their data, and it
lingers: in a booking row, in the mail outbox, in a free page or the write-ahead log of
the database file, behind the old status link, or as a PIN a lock still opens for. Ops'
erasure through the HTTP API cancels the future booking the normal way (the lock's
snapshot drops the PIN, the citizen gets the cancellation mail over real SMTP) and leaves
nothing of the person in any table or in the SQLite file once that mail went out."""

from __future__ import annotations

from typing import Any

from cloud.core.mail import MailDelivery, SmtpTransport
from cloud.core.personal_data import RetentionJobs
from cloud.services import Services
from tests.security.conftest import HOUR, NOW, Cloud
from tests.support.confirm_mail import confirm_by_mail
from tests.support.personal_data import sqlite_files_holding, tables_holding
from tests.support.smtp import running_smtp_server

NAME, EMAIL, PURPOSE = "Ishikawa Mei", "Mei.Ishikawa@example.jp", "Mei's birthday volleyball"
ERASE = "/api/personal-data/bookings"


async def _booked(cloud: Cloud, start: int) -> dict[str, Any]:
    body = {
        "room_id": cloud.seed.room_id,
        "name": NAME,
        "email": EMAIL,
        "group_size": 12,
        "purpose": PURPOSE,
        "start": start,
        "end": start + 2 * HOUR,
    }
    created = await cloud.http.post("/api/reservations", json=body)
    assert created.status_code == 201, created.text
    rid = created.json()["id"]
    await confirm_by_mail(cloud.http, cloud.app.state.sessions, EMAIL, rid)
    approved = await cloud.http.post(
        f"/api/reservations/{rid}/approve", headers=cloud.as_user("manager")
    )
    assert approved.status_code == 200, approved.text
    return dict(created.json())


def _granted(cloud: Cloud) -> set[str]:
    svc: Services = cloud.app.state.services
    snapshot = svc.access.snapshot(cloud.seed.site, cloud.seed.gateway)
    return {g.grant_id for lock in snapshot.locks for g in lock.grants}


async def test_an_erased_citizen_leaves_nothing_behind(cloud: Cloud) -> None:
    past = await _booked(cloud, NOW + HOUR)
    future = await _booked(cloud, NOW + 72 * HOUR)
    cloud.app.state.clock.set(NOW + 4 * HOUR)  # the first one is over
    svc: Services = cloud.app.state.services
    future_grant = svc.reservations.get(future["id"]).grant
    assert future_grant is not None
    assert future_grant.id in _granted(cloud)
    ops = cloud.as_user("ops")

    preview = await cloud.http.post(f"{ERASE}/erasure-preview", json={"email": EMAIL}, headers=ops)
    assert preview.json() == {"email": EMAIL.lower(), "bookings": 2, "to_cancel": 1}
    body = {"email": EMAIL.upper(), "expected_bookings": 2}
    erased = await cloud.http.post(f"{ERASE}/erase", json=body, headers=ops)
    assert erased.status_code == 200, erased.text
    # per booking, the mail asking to confirm it, then the approval with its PIN (queued:
    # no SMTP yet) go at once, never sent
    assert erased.json() == {"cancelled": 1, "anonymised": 2, "mails_deleted": 6}
    assert future_grant.id not in _granted(cloud)  # the lock is told to forget the PIN

    settings = cloud.app.state.settings.model_copy(update={"smtp_starttls": False})
    with running_smtp_server() as smtp:
        settings = settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": smtp.port})
        sessions, clock = cloud.app.state.sessions, cloud.app.state.clock
        MailDelivery(sessions, clock, settings, SmtpTransport(settings)).deliver_due()
    told = [m for m in smtp.inbox.messages if "cancelled" in str(m["Subject"]).lower()]
    assert [m["To"] for m in told] == [EMAIL]  # the citizen heard of the cancellation

    jobs: RetentionJobs = cloud.app.state.retention
    jobs.run_due()  # the cancellation mail went out: now it goes too
    for needle in (EMAIL, "Ishikawa", PURPOSE):
        assert tables_holding(cloud.app.state.sessions, needle) == {}, needle
        assert sqlite_files_holding(str(settings.database_url), needle) == [], needle
    old_link = await cloud.http.get(f"/r/{past['id']}", params={"token": past["access_token"]})
    assert old_link.status_code == 404
    assert NAME not in old_link.text

    again = await cloud.http.post(f"{ERASE}/erasure-preview", json={"email": EMAIL}, headers=ops)
    assert again.status_code == 404
    log = (await cloud.http.get("/api/personal-data/log", headers=ops)).json()
    erasure = next(e for e in log if e["action"] == "erasure")
    assert (erasure["actor"], erasure["subject"], erasure["rows"]) == (
        "ops:ops",
        "m***@example.jp",
        9,  # 1 cancelled + 2 anonymised + 6 mails
    )
