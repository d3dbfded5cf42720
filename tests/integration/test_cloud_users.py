"""Logins: a right password is remembered briefly, bound to the stored hash."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.models import Role, User
from cloud.core.users import VERIFIED_TTL_S, UserService, hash_password
from cloud.db import make_engine, make_sessionmaker, migrate
from protocol.clock import ManualClock


def _users(tmp_path: Path) -> tuple[UserService, ManualClock, sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path}/u.db"
    migrate(url)
    sessions = make_sessionmaker(make_engine(url))
    clock = ManualClock(1_800_000_000)
    return UserService(sessions, clock), clock, sessions


def test_a_remembered_password_still_refuses_a_wrong_one_and_a_changed_one(
    tmp_path: Path,
) -> None:
    users, clock, sessions = _users(tmp_path)
    _, password = users.create("nurse", Role.CLINIC)
    assert users.authenticate("nurse", password) is not None
    assert users.authenticate("nurse", password) is not None  # remembered: no scrypt
    assert users.authenticate("nurse", password + "x") is None
    # the password is changed in the database: the remembered one no longer opens
    with sessions.begin() as session:
        session.execute(
            update(User).where(User.username == "nurse").values(password_hash=hash_password("new"))
        )
    assert users.authenticate("nurse", password) is None
    assert users.authenticate("nurse", "new") is not None
    clock.advance(VERIFIED_TTL_S + 1)  # past the memory: checked with scrypt again, still right
    assert users.authenticate("nurse", "new") is not None
