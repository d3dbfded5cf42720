"""Notifications and figures against a real database (SQLite and PostgreSQL) and a real
SMTP server (aiosmtpd on a free port): the PIN mail, an SMTP outage, refused mail,
reminders once, no-shows, the survey and its score, bulk mail, monthly figures."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.bootstrap import DemoSeed, seed_demo
from cloud.core.mail import MailDelivery, SmtpTransport
from cloud.core.models import MailMessage, MailState
from cloud.db import make_engine, make_sessionmaker, migrate
from cloud.errors import ConflictError, InvalidRequestError, NotFoundError
from cloud.gym.figures import figures_csv
from cloud.gym.notifications import NotificationService
from cloud.gym.notifications_bulk import BulkMailDraft
from cloud.gym.reservations import BookingRequest
from cloud.services import Services, build_services
from cloud.settings import CloudSettings
from protocol.clock import ManualClock
from protocol.messages import LockEventData, LockEventKind
from tests.support.cloud import DB_KINDS, fresh_database
from tests.support.confirm_mail import citizen_view, confirm_in_service
from tests.support.smtp import SmtpServer, running_smtp_server
from tests.unit.test_booking_rules import at

NOW = at("2027-01-15 09:00")
HOUR, DAY = 3600, 24 * 3600


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


@dataclass
class World:
    svc: Services
    sessions: sessionmaker[Session]
    clock: ManualClock
    seed: DemoSeed
    settings: CloudSettings
    url: str

    def book(self, start: str, hours: float = 2, email: str = "taro@example.jp", **kw: Any) -> str:
        """Book and confirm from the mail, as the citizen does."""
        rid = self.unconfirmed(start, hours, email, **kw)
        confirm_in_service(self.svc, self.sessions, email, rid)
        return rid

    def unconfirmed(
        self, start: str, hours: float = 2, email: str = "taro@example.jp", **kw: Any
    ) -> str:
        """Book; only the mail asking to confirm goes out."""
        begin = at(start)
        req = BookingRequest(
            citizen_name=kw.pop("name", "Taro"),
            email=email,
            starts_at=begin,
            ends_at=begin + int(hours * HOUR),
            room_id=self.seed.room_id,
            **kw,
        )
        return self.svc.reservations.create(req).reservation.id

    def approved(self, start: str, hours: float = 2, **kw: Any) -> str:
        rid = self.book(start, hours, **kw)
        self.svc.approvals.approve(rid, by="manager")
        return rid

    def mails(self, to: str | None = None) -> list[MailMessage]:
        with self.sessions() as session:
            query = select(MailMessage).order_by(MailMessage.id)
            if to is not None:
                query = query.where(MailMessage.to == to)
            rows = list(session.scalars(query).all())
            session.expunge_all()
            return rows

    def delivery(self, smtp_port: int) -> MailDelivery:
        settings = self.settings.model_copy(
            update={"smtp_host": "127.0.0.1", "smtp_port": smtp_port, "smtp_starttls": False}
        )
        return MailDelivery(self.sessions, self.clock, settings, SmtpTransport(settings))

    def unlock(self, grant_id: str, seq: int, when: int) -> None:
        event = LockEventData(
            lock_id=self.seed.lock_id,
            seq=seq,
            lock_ts=when,
            kind=LockEventKind.UNLOCKED,
            grant_id=grant_id,
        )
        assert self.svc.events.ingest(self.seed.site, self.seed.gateway, event)

    def grant_of(self, rid: str) -> str:
        view = self.svc.reservations.get(rid)
        assert view.grant is not None
        return view.grant.id


@pytest.fixture(params=DB_KINDS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    with fresh_database(request.param, tmp_path) as url:
        migrate(url)
        engine = make_engine(url)
        try:
            sessions = make_sessionmaker(engine)
            clock = ManualClock(NOW)
            settings = CloudSettings(
                database_url=url,
                secret_key="k" * 40,
                metrics_token="m" * 32,
                mqtt_enabled=False,
                mail_retry_cap_s=600,
            )
            with sessions.begin() as session:
                seed = seed_demo(session)
            yield World(
                build_services(sessions, clock, settings), sessions, clock, seed, settings, url
            )
        finally:
            engine.dispose()


# --- SMTP delivery -------------------------------------------------------------------


def test_the_citizen_gets_the_pin_mail_over_smtp(world: World, smtp: SmtpServer) -> None:
    rid = world.approved("2027-01-15 18:00")
    pin = citizen_view(world.svc, world.sessions, rid).grant
    assert pin is not None
    assert pin.pin is not None
    run = world.delivery(smtp.port).deliver_due()
    assert (run.sent, run.retrying, run.failed) == (3, 0, 0)  # confirm + received + PIN
    pin_mails = [m for m in smtp.inbox.messages if m["Subject"] == "Your PIN for Main hall"]
    (mail,) = pin_mails
    assert mail["To"] == "taro@example.jp"
    assert mail["From"] == world.settings.smtp_from
    body = mail.get_payload(decode=True)
    assert isinstance(body, bytes)
    assert f"PIN: {pin.pin}" in body.decode()
    assert all(m.state is MailState.SENT and m.sent_at == NOW for m in world.mails())
    # the stored copy of a sent mail keeps no PIN and no booking link
    (kept,) = [m for m in world.mails() if m.subject == "Your PIN for Main hall"]
    assert pin.pin not in kept.body
    assert "token=" not in kept.body
    # sent mails are not sent again
    assert world.delivery(smtp.port).deliver_due().sent == 0
    assert len(smtp.inbox.messages) == 3


def test_an_smtp_outage_keeps_the_mail_queued_until_the_server_returns(
    world: World, smtp: SmtpServer
) -> None:
    smtp.stop()
    world.approved("2027-01-15 18:00")
    delivery = world.delivery(smtp.port)
    run = delivery.deliver_due()
    assert (run.sent, run.retrying) == (0, 3)
    for m in world.mails():
        assert m.state is MailState.QUEUED
        assert m.attempts == 1
        assert m.last_error is not None
        assert "unreachable" in m.last_error
        assert NOW + 15 <= m.next_attempt_at <= NOW + 30  # 30 s base, equal jitter
    # not due yet: nothing is tried
    assert delivery.deliver_due().retrying == 0
    world.clock.advance(30)
    assert delivery.deliver_due().retrying == 3
    assert {m.attempts for m in world.mails()} == {2}
    smtp.start()
    world.clock.advance(600)  # past the capped backoff
    assert delivery.deliver_due().sent == 3
    assert {m.state for m in world.mails()} == {MailState.SENT}
    assert {m["To"] for m in smtp.inbox.messages} == {"taro@example.jp"}
    assert len(smtp.inbox.messages) == 3


def test_a_refused_recipient_fails_with_the_error_and_can_be_queued_again(
    world: World, smtp: SmtpServer
) -> None:
    smtp.inbox.refuse.add("nobody@example.jp")
    world.unconfirmed("2027-01-15 18:00", email="nobody@example.jp")
    run = world.delivery(smtp.port).deliver_due()
    assert (run.sent, run.failed) == (0, 1)
    (mail,) = world.mails()
    assert mail.state is MailState.FAILED
    assert mail.last_error is not None
    assert "550" in mail.last_error
    with pytest.raises(NotFoundError):
        world.svc.mail.retry(mail.id + 100)
    smtp.inbox.refuse.clear()
    assert world.svc.mail.retry(mail.id).state is MailState.QUEUED
    with pytest.raises(ConflictError, match="only a failed one"):
        world.svc.mail.retry(mail.id)
    assert world.delivery(smtp.port).deliver_due().sent == 1


def test_two_deliveries_at_once_send_each_mail_once(world: World, smtp: SmtpServer) -> None:
    for i in range(4):
        world.unconfirmed(f"2027-01-16 {10 + 2 * i}:00", email=f"c{i}@example.jp")
    deliveries = [world.delivery(smtp.port) for _ in range(3)]
    barrier = threading.Barrier(3)

    def run(d: MailDelivery) -> int:
        barrier.wait()
        return d.deliver_due().sent

    with ThreadPoolExecutor(3) as pool:
        sent = sum(pool.map(run, deliveries))
    assert sent == 4
    assert sorted(m["To"] for m in smtp.inbox.messages) == [f"c{i}@example.jp" for i in range(4)]


# --- reminders -------------------------------------------------------------------------


def test_each_approved_booking_gets_one_reminder_the_day_before(world: World) -> None:
    rid = world.approved("2027-01-17 10:00")
    world.approved("2027-01-15 20:00", email="late@example.jp")  # approved < 24 h before
    pending = world.book("2027-01-17 14:00", email="pending@example.jp")
    notes = world.svc.notifications
    assert notes.run_due_reminders(at("2027-01-16 09:59")) == 0
    assert notes.run_due_reminders(at("2027-01-16 10:00")) == 1
    assert notes.run_due_reminders(at("2027-01-16 10:05")) == 0
    # a restarted process, or a second worker, sends nothing more
    again = NotificationService(world.sessions, world.clock, world.settings)
    assert again.run_due_reminders(at("2027-01-16 11:00")) == 0
    (reminder,) = [m for m in world.mails() if m.subject.startswith("Reminder")]
    assert reminder.to == "taro@example.jp"
    assert "10:00\u201312:00 on 2027-01-17" in reminder.subject
    assert f"/r/{rid}?token=" in reminder.body
    view = citizen_view(world.svc, world.sessions, rid)
    assert view.grant is not None
    assert view.grant.pin is not None
    assert view.grant.pin not in reminder.body  # the PIN is told once
    assert not [m for m in world.mails("late@example.jp") if m.subject.startswith("Reminder")]
    assert not [m for m in world.mails("pending@example.jp") if m.subject.startswith("Rem")]
    assert pending


def test_workers_racing_for_reminders_queue_one_each(world: World) -> None:
    for i in range(3):
        world.approved(f"2027-01-17 {10 + 2 * i}:00", email=f"c{i}@example.jp")
    workers = [NotificationService(world.sessions, world.clock, world.settings) for _ in range(4)]
    barrier = threading.Barrier(4)

    def run(n: NotificationService) -> int:
        barrier.wait()
        return n.run_due_reminders(at("2027-01-16 16:00"))

    with ThreadPoolExecutor(4) as pool:
        assert sum(pool.map(run, workers)) == 3
    assert len([m for m in world.mails() if m.subject.startswith("Reminder")]) == 3


def test_a_cancelled_booking_gets_no_reminder(world: World) -> None:
    rid = world.approved("2027-01-17 10:00")
    world.svc.cancellations.by_manager(rid, "manager", "drill")
    assert world.svc.notifications.run_due_reminders(at("2027-01-16 10:00")) == 0


# --- no-shows, survey, score --------------------------------------------------------


def test_a_booking_nobody_opened_is_a_no_show_until_a_late_unlock_arrives(world: World) -> None:
    came = world.approved("2027-01-15 10:00")
    missed = world.approved("2027-01-15 13:00", email="jiro@example.jp", name="Jiro")
    world.unlock(world.grant_of(came), 1, at("2027-01-15 10:02"))
    notes = world.svc.notifications
    assert notes.run_no_show_check(at("2027-01-15 14:59")) == (0, 0)  # both before end
    assert notes.run_no_show_check(at("2027-01-15 15:00")) == (1, 0)
    assert notes.run_no_show_check(at("2027-01-15 16:00")) == (0, 0)
    (flag,) = notes.no_shows(world.seed.facility_id)
    assert (flag.reservation_id, flag.citizen_name) == (missed, "Jiro")
    assert notes.no_shows(world.seed.facility_id, date(2027, 1, 16), date(2027, 1, 31)) == []
    # the site was offline: the unlock arrives days later and clears the flag
    world.unlock(world.grant_of(missed), 2, at("2027-01-15 13:05"))
    assert notes.run_no_show_check(at("2027-01-18 09:00")) == (0, 1)
    assert notes.no_shows(world.seed.facility_id) == []


def test_the_survey_goes_out_once_after_the_visit_and_takes_one_score(world: World) -> None:
    came = world.approved("2027-01-15 10:00")
    world.approved("2027-01-15 13:00", email="jiro@example.jp")  # a no-show: no survey
    world.unlock(world.grant_of(came), 1, at("2027-01-15 10:02"))
    world.clock.set(at("2027-01-15 16:30"))
    run = world.svc.notifications.run_due()
    assert (run.no_shows, run.surveys) == (1, 1)
    assert world.svc.notifications.run_due().surveys == 0
    (survey,) = [m for m in world.mails() if m.subject.startswith("How was your visit")]
    assert survey.to == "taro@example.jp"
    link = re.search(r"/feedback/(\S+)\?sig=(\w+)", survey.body)
    assert link is not None
    rid, sig = link.groups()
    assert rid == came
    notes = world.svc.notifications
    assert notes.survey(rid, sig).score is None
    with pytest.raises(NotFoundError):
        notes.survey(rid, "0" * 32)
    with pytest.raises(InvalidRequestError):
        notes.record_score(rid, sig, 6)
    assert notes.record_score(rid, sig, 4).score == 4
    with pytest.raises(ConflictError, match="already"):
        notes.record_score(rid, sig, 1)
    assert notes.survey(rid, sig).score == 4


# --- bulk mail ---------------------------------------------------------------------


def test_bulk_mail_previews_sends_once_and_logs(world: World) -> None:
    world.approved("2027-01-20 10:00")
    world.book("2027-01-20 14:00", email="TARO@example.jp")  # the same citizen: one mail
    world.book("2027-01-21 10:00", email="hanako@example.jp", name="Hanako")
    world.book("2027-01-25 10:00", email="outside@example.jp")  # outside the range
    cancelled = world.book("2027-01-20 18:00", email="gone@example.jp")
    world.svc.cancellations.by_manager(cancelled, "manager", "moved")
    draft = BulkMailDraft(
        world.seed.facility_id,
        date(2027, 1, 20),
        date(2027, 1, 21),
        "Closure: disaster drill",
        "The gym is closed for a disaster drill on these days.",
    )
    bulk = world.svc.bulk_mail
    preview = bulk.preview(draft)
    assert [(r.name, r.email, len(r.bookings)) for r in preview.recipients] == [
        ("Taro", "taro@example.jp", 2),
        ("Hanako", "hanako@example.jp", 1),
    ]
    assert preview.sample is not None
    assert preview.sample.body.startswith("Dear Taro,\n\nThe gym is closed")
    assert "- Main hall, 10:00\u201312:00 on 2027-01-20" in preview.sample.body
    before = len(world.mails())
    assert len(world.mails()) == before  # a preview queues nothing
    first = bulk.send(draft, "manager:manager", "drill-2027-01-key")
    again = bulk.send(draft, "manager:manager", "drill-2027-01-key")
    assert (first.recipients, first.replayed, again.replayed, again.id) == (
        2,
        False,
        True,
        first.id,
    )
    drill = [m for m in world.mails() if m.subject == "Closure: disaster drill"]
    assert sorted(m.to for m in drill) == ["hanako@example.jp", "taro@example.jp"]
    with pytest.raises(ConflictError):
        bulk.send(
            BulkMailDraft(draft.facility_id, draft.from_day, draft.to_day, "Other", "x"),
            "manager:manager",
            "drill-2027-01-key",
        )
    (logged,) = bulk.log(world.seed.facility_id)
    assert (logged.sent_by, logged.recipients, logged.delivered, logged.sent_at) == (
        "manager:manager",
        2,
        0,
        NOW,
    )
    empty = BulkMailDraft(draft.facility_id, date(2027, 3, 1), date(2027, 3, 2), "S", "B")
    with pytest.raises(InvalidRequestError, match="nothing sent"):
        bulk.send(empty, "manager:manager", "another-key-123")


# --- figures ------------------------------------------------------------------------


def test_monthly_figures_count_users_utilisation_no_shows_and_scores(world: World) -> None:
    a = world.approved("2027-01-15 10:00", group_size=8)
    b = world.approved("2027-01-15 13:00", email="jiro@example.jp", group_size=5)
    c = world.approved("2027-01-16 10:00", hours=4, group_size=3)  # Taro again
    world.approved("2027-02-02 10:00", email="hanako@example.jp")  # future, February
    world.book("2027-01-20 10:00", email="pending@example.jp")  # pending: not counted
    world.unlock(world.grant_of(a), 1, at("2027-01-15 10:01"))
    world.unlock(world.grant_of(c), 2, at("2027-01-16 10:01"))
    world.clock.set(at("2027-01-17 12:00"))
    world.svc.notifications.run_due()
    for rid, score in ((a, 5), (c, 2)):
        survey = [m for m in world.mails() if rid in m.body and "feedback" in m.body]
        assert len(survey) == 1
        sig = re.search(r"sig=(\w+)", survey[0].body)
        assert sig is not None
        world.svc.notifications.record_score(rid, sig.group(1), score)
    figures = world.svc.figures.monthly(world.seed.facility_id, date(2027, 1, 1), date(2027, 2, 28))
    jan, feb = figures.months
    assert (jan.month, jan.bookings, jan.users, jan.visitors) == ("2027-01", 3, 1, 11)
    assert (jan.booked_hours, jan.open_hours) == (8.0, 31 * 24.0)
    assert jan.utilisation == round(8 / (31 * 24), 4)
    assert (jan.ended_bookings, jan.no_shows, jan.no_show_rate) == (3, 1, round(1 / 3, 4))
    assert (jan.responses, jan.satisfaction) == (2, 3.5)
    assert (feb.bookings, feb.ended_bookings, feb.no_show_rate, feb.satisfaction) == (
        1,
        0,
        None,
        None,
    )
    assert b
    lines = figures_csv(figures).splitlines()
    assert lines[0].startswith("facility_id,month,from_day,to_day,bookings,users,visitors")
    assert lines[1].startswith(f"{world.seed.facility_id},2027-01,2027-01-01,2027-01-31,3,1,11,8.0")
    assert ",," in lines[2]  # no rate, no score in February
    with pytest.raises(InvalidRequestError):
        world.svc.figures.monthly(world.seed.facility_id, date(2027, 2, 1), date(2027, 1, 1))
