"""Logins: a right password is remembered briefly, bound to the stored hash; an old
scrypt hash is replaced by argon2id at the next login; sessions end on the server."""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.models import Role, User
from cloud.core.throttle import LoginThrottle
from cloud.core.users import VERIFIED_TTL_S, UserService, hash_password
from cloud.core.web_sessions import PENDING_MAX_AGE_S, SESSION_MAX_AGE_S, WebSessions
from cloud.db import make_engine, make_sessionmaker, migrate
from protocol.clock import ManualClock

HERE = "192.0.2.10"


def _users(tmp_path: Path) -> tuple[UserService, ManualClock, sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path}/u.db"
    migrate(url)
    sessions = make_sessionmaker(make_engine(url))
    clock = ManualClock(1_800_000_000)
    return UserService(sessions, clock, LoginThrottle(clock)), clock, sessions


def test_a_remembered_password_still_refuses_a_wrong_one_and_a_changed_one(
    tmp_path: Path,
) -> None:
    users, clock, sessions = _users(tmp_path)
    _, password = users.create("nurse", Role.CLINIC)
    assert users.authenticate("nurse", password, HERE) is not None
    assert users.authenticate("nurse", password, HERE) is not None  # remembered: no hash
    assert users.authenticate("nurse", password + "x", HERE) is None
    # the password is changed in the database: the remembered one no longer opens
    with sessions.begin() as session:
        session.execute(
            update(User).where(User.username == "nurse").values(password_hash=hash_password("new"))
        )
    assert users.authenticate("nurse", password, HERE) is None
    assert users.authenticate("nurse", "new", HERE) is not None
    clock.advance(VERIFIED_TTL_S + 1)  # past the memory: checked with argon2id again
    assert users.authenticate("nurse", "new", HERE) is not None


def test_a_user_with_an_old_scrypt_hash_logs_in_and_gets_argon2id(tmp_path: Path) -> None:
    users, _, sessions = _users(tmp_path)
    salt = bytes(range(16))
    digest = hashlib.scrypt(b"an old password!", salt=salt, n=2**14, r=8, p=1, dklen=32)
    with sessions.begin() as session:
        session.add(
            User(
                username="veteran",
                password_hash=f"scrypt${2**14}$8$1${salt.hex()}${digest.hex()}",
                role=Role.MANAGER,
                created_at=0,
            )
        )
    assert users.authenticate("veteran", "an old password?", HERE) is None
    with sessions() as session:
        assert session.scalar(select(User.password_hash)).startswith("scrypt$")
    assert users.authenticate("veteran", "an old password!", HERE) is not None
    with sessions() as session:
        stored = session.scalar(select(User.password_hash))
    assert stored.startswith("$argon2id$")
    # and the new hash opens with the same password, the old one no more
    fresh, _, _ = _users(tmp_path)
    assert fresh.authenticate("veteran", "an old password!", HERE) is not None


def test_sessions_expire_and_end_on_the_server(tmp_path: Path) -> None:
    users, clock, sessions = _users(tmp_path)
    web = WebSessions(sessions, clock, "s" * 40)
    hanako, _ = users.create("hanako", Role.MANAGER)
    first, second = web.open(hanako, pending=False), web.open(hanako, pending=False)
    pending = web.open(hanako, pending=True)
    seen, other = web.get(first), web.get(second)
    assert seen is not None
    assert other is not None
    assert seen.user == hanako
    assert not seen.pending
    assert seen.csrf_token != other.csrf_token
    assert web.get(first + "x") is None
    web.end(first)
    assert web.get(first) is None
    assert web.get(second) is not None
    clock.advance(PENDING_MAX_AGE_S + 1)
    assert web.get(pending) is None  # the code must follow the password soon
    clock.advance(SESSION_MAX_AGE_S)
    assert web.get(second) is None
    third = web.open(hanako, pending=False)
    assert web.end_all(hanako.id) == 1  # the expired ones were swept at the last open
    assert web.get(third) is None
