"""A clinic world for the cloud's clinic tests: a fresh database (SQLite or PostgreSQL)
with :func:`cloud.bootstrap.seed_clinic`, the clinic services on a manual clock, and the
sites each change told the publisher about."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from cloud.bootstrap import ClinicSeed, seed_clinic
from cloud.clinic.card_qr import card_qr_key, sign_card_qr
from cloud.clinic.publish import ClinicChanged
from cloud.clinic.services import ClinicServices, build_clinic_services
from cloud.core.bus import ChangeBus
from cloud.core.models import MailMessage
from cloud.db import make_engine, make_sessionmaker, migrate
from cloud.settings import CloudSettings
from protocol.clock import ManualClock
from protocol.patient_card import PatientCardNumber
from protocol.queue_rules import TOKYO
from tests.support.cloud import fresh_database


def at(text: str) -> float:
    """Epoch seconds of a Tokyo wall-clock time ``2027-01-15 09:00``."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=TOKYO).timestamp()


NINE = at("2027-01-15 09:00")  # a Friday morning
MIN = 60.0


@dataclass
class ClinicWorld:
    """The clinic services on one database, with the seeded site."""

    engine: Engine
    sessions: sessionmaker[Session]
    clock: ManualClock
    settings: CloudSettings
    clinic: ClinicServices
    seed: ClinicSeed
    changed: list[tuple[str, str]] = field(default_factory=list)

    def card(self, name: str) -> str:
        """The card digits of the seeded patient called ``name``."""
        return next(p.card for p in self.seed.patients if p.name == name)

    def mails(self) -> list[MailMessage]:
        with self.sessions() as session:
            return list(session.scalars(select(MailMessage).order_by(MailMessage.id)).all())


def card_qr(settings: CloudSettings, site: str, card: str) -> str:
    """The QR code ``site``'s reception prints on ``card``: what the patient's phone sends."""
    return sign_card_qr(card_qr_key(settings), site, PatientCardNumber.parse(card))


def extra_card(serial: int, facility: int = 1) -> str:
    return PatientCardNumber.issue(facility, serial).digits


@contextlib.contextmanager
def clinic_world(kind: str, tmp_path: Path, *, now: float = NINE) -> Iterator[ClinicWorld]:
    """A seeded clinic (``seed_clinic`` at ``now``) on a fresh ``kind`` database."""
    with fresh_database(kind, tmp_path) as url:
        migrate(url)
        engine = make_engine(url)
        try:
            sessions = make_sessionmaker(engine)
            clock = ManualClock(now)
            settings = CloudSettings(
                database_url=url, secret_key="s" * 40, metrics_token="m" * 32, mqtt_enabled=False
            )
            bus = ChangeBus()
            changed: list[tuple[str, str]] = []
            bus.subscribe(
                ClinicChanged, lambda change: changed.append((change.site, change.gateway))
            )
            clinic = build_clinic_services(sessions, clock, settings, bus)
            with sessions.begin() as session:
                seed = seed_clinic(session, clock=clock)
            yield ClinicWorld(engine, sessions, clock, settings, clinic, seed, changed)
        finally:
            engine.dispose()
