"""The Alembic migrations build exactly the schema the models declare."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from cloud.db import Base, make_engine, make_sessionmaker, migrate
from cloud.db.migrate import alembic_config
from cloud.gym.pin_seal import PinSeal
from cloud.services import build_services
from cloud.settings import CloudSettings
from protocol.clock import ManualClock
from protocol.pin import pin_tag
from tests.support.cloud import DB_KINDS, fresh_database


@pytest.mark.parametrize("kind", DB_KINDS)
def test_upgrade_head_matches_the_models(kind: str, tmp_path: Path) -> None:
    with fresh_database(kind, tmp_path) as url:
        migrate(url)
        migrate(url)  # a second start-up is a no-op
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                context = MigrationContext.configure(conn, opts={"compare_type": True})
                assert compare_metadata(context, Base.metadata) == []
                tables = set(inspect(conn).get_table_names())
        finally:
            engine.dispose()
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables


@pytest.mark.parametrize("kind", DB_KINDS)
def test_0003_gives_each_lock_a_room_and_keeps_bookings_and_grants(
    kind: str, tmp_path: Path
) -> None:
    with fresh_database(kind, tmp_path) as url:
        command.upgrade(alembic_config(url), "0002")
        engine = make_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "INSERT INTO facilities (id, name, site, gateway) "
                        "VALUES (1, 'Gym', 'g', 'gw')"
                    )
                )
                for i, lock in ((1, "door-1"), (2, "door-2")):
                    conn.execute(
                        text(
                            "INSERT INTO locks (id, lock_id, facility_id, name, pin_key) "
                            "VALUES (:i, :lock, 1, 'Door', :key)"
                        ),
                        {"i": i, "lock": lock, "key": "ab" * 32},
                    )
                conn.execute(
                    text(
                        "INSERT INTO reservations (id, facility_id, lock_id, citizen_name, email, "
                        "starts_at, ends_at, status, access_token, created_at) VALUES "
                        "('r1', 1, 2, 'Taro', 't@x.jp', 2000, 3000, 'approved', 'tok', 1)"
                    )
                )
                conn.execute(
                    text(
                        "INSERT INTO access_grants (id, reservation_id, lock_id, pin, "
                        "window_start, window_end, created_at) "
                        "VALUES ('g1', 'r1', 2, '482913', 1000, 4000, 1)"
                    )
                )
            migrate(url, SECRET_KEY)  # 0010 seals the PIN with it
            with engine.connect() as conn:
                rooms = conn.execute(text("SELECT id, name FROM rooms ORDER BY id")).all()
                locks = {
                    str(lock): int(room)
                    for lock, room in conn.execute(text("SELECT lock_id, room_id FROM locks"))
                }
                room_of_r1 = conn.execute(text("SELECT room_id FROM reservations")).scalar_one()
                hours = conn.execute(text("SELECT count(*) FROM opening_hours")).scalar_one()
                payment = conn.execute(text("SELECT payment_state FROM reservations")).scalar_one()
        finally:
            engine.dispose()
        # same-named locks get distinct rooms; the booking stays on its lock's room
        assert [name for _, name in rooms] == ["Door", "Door (door-2)"]
        assert room_of_r1 == locks["door-2"] != locks["door-1"]
        assert (hours, payment) == (7, "unpaid")
        engine = make_engine(url)
        try:
            svc = build_services(
                make_sessionmaker(engine),
                ManualClock(1500),
                CloudSettings(dev=True, secret_key=SECRET_KEY),
            )
            snap = svc.access.snapshot("g", "gw")
        finally:
            engine.dispose()
        grants = {lock.lock_id: [g.grant_id for g in lock.grants] for lock in snap.locks}
        assert grants == {"door-1": [], "door-2": ["g1"]}


SECRET_KEY = "k" * 40


@pytest.mark.parametrize("kind", DB_KINDS)
def test_0010_seals_stored_pins_and_blanks_them_in_sent_mail(kind: str, tmp_path: Path) -> None:
    pin_mail = "Dear Taro,\n\nPIN: 482913\nYour booking: http://c/r/r1?token=tok\n"
    with fresh_database(kind, tmp_path) as url:
        command.upgrade(alembic_config(url), "0009")
        engine = make_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "INSERT INTO facilities (id, name, site, gateway) "
                        "VALUES (1, 'Gym', 'g', 'gw')"
                    )
                )
                conn.execute(
                    text("INSERT INTO rooms (id, facility_id, name) VALUES (1, 1, 'Hall')")
                )
                conn.execute(
                    text(
                        "INSERT INTO locks (id, lock_id, facility_id, name, pin_key) "
                        "VALUES (1, 'door-1', 1, 'Door', :key)"
                    ),
                    {"key": "ab" * 32},
                )
                conn.execute(
                    text(
                        "INSERT INTO reservations (id, facility_id, room_id, citizen_name, email, "
                        "starts_at, ends_at, status, access_token, created_at) VALUES "
                        "('r1', 1, 1, 'Taro', 't@x.jp', 2000, 3000, 'approved', 'tok', 1)"
                    )
                )
                conn.execute(
                    text(
                        "INSERT INTO access_grants (id, reservation_id, pin, window_start, "
                        "window_end, created_at) VALUES ('g1', 'r1', '482913', 1000, 4000, 1)"
                    )
                )
                for state in ("sent", "queued"):
                    conn.execute(
                        text(
                            'INSERT INTO mail_outbox ("to", subject, body, created_at, state) '
                            "VALUES ('t@x.jp', 'Your PIN for Hall', :body, 1, :state)"
                        ),
                        {"body": pin_mail, "state": state},
                    )
            with pytest.raises(RuntimeError, match="DENEN_CLOUD_SECRET_KEY"):
                migrate(url)  # no key: nothing is half done
            migrate(url, SECRET_KEY)
            with engine.connect() as conn:
                sealed = conn.execute(text("SELECT pin_sealed FROM access_grants")).scalar_one()
                rows = conn.execute(text("SELECT state, body FROM mail_outbox ORDER BY id")).all()
            mails = {str(state): str(body) for state, body in rows}
            assert "482913" not in sealed
            assert PinSeal(SECRET_KEY).open("g1", sealed) == "482913"
            assert "482913" not in mails["sent"]
            assert "token=tok" not in mails["sent"]
            assert mails["queued"] == pin_mail  # still to be sent: the citizen needs it
            svc = build_services(
                make_sessionmaker(engine),
                ManualClock(1500),
                CloudSettings(dev=True, secret_key=SECRET_KEY),
            )
            (lock,) = svc.access.snapshot("g", "gw").locks
            assert [g.tag for g in lock.grants] == [
                pin_tag(bytes.fromhex("ab" * 32), "482913").hex()
            ]
            (queued,) = [m for m in svc.mail.messages() if m.state.value == "queued"]
            assert "482913" not in queued.body  # staff read it blanked
            command.downgrade(alembic_config(url, SECRET_KEY), "0009")
            with engine.connect() as conn:
                assert conn.execute(text("SELECT pin FROM access_grants")).scalar_one() == "482913"
        finally:
            engine.dispose()


@pytest.mark.parametrize("kind", DB_KINDS)
def test_0006_admits_the_clinic_role_and_keeps_the_users(kind: str, tmp_path: Path) -> None:
    insert = text(
        "INSERT INTO users (username, password_hash, role, created_at) "
        "VALUES (:name, 'x', :role, 1)"
    )
    with fresh_database(kind, tmp_path) as url:
        command.upgrade(alembic_config(url), "0005")
        engine = make_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(insert, {"name": "m", "role": "manager"})
            migrate(url)
            with engine.begin() as conn:
                conn.execute(insert, {"name": "c", "role": "clinic"})
            with pytest.raises(IntegrityError), engine.begin() as conn:
                conn.execute(insert, {"name": "b", "role": "bogus"})
            with engine.connect() as conn:
                users = conn.execute(text("SELECT username, role FROM users ORDER BY id")).all()
            command.downgrade(alembic_config(url), "0005")  # clinic users go with the role
            with engine.connect() as conn:
                kept = conn.execute(text("SELECT username FROM users")).scalars().all()
        finally:
            engine.dispose()
    assert [tuple(u) for u in users] == [("m", "manager"), ("c", "clinic")]
    assert kept == ["m"]


@pytest.mark.parametrize("kind", DB_KINDS)
def test_0008_keys_events_by_site_and_boot_and_keeps_them(kind: str, tmp_path: Path) -> None:
    event = text(
        "INSERT INTO lock_events (lock_id, seq, lock_ts, kind, received_at) "
        "VALUES (:lock, :seq, 100, 'unlocked', 1)"
    )
    with fresh_database(kind, tmp_path) as url:
        command.upgrade(alembic_config(url), "0007")
        engine = make_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "INSERT INTO facilities (id, name, site, gateway) "
                        "VALUES (1, 'Gym', 'gym-a', 'gw-1')"
                    )
                )
                conn.execute(
                    text(
                        "INSERT INTO locks (id, lock_id, facility_id, name, pin_key) "
                        "VALUES (1, 'door-1', 1, 'Door', :key)"
                    ),
                    {"key": "ab" * 32},
                )
                conn.execute(event, {"lock": "door-1", "seq": 1})
                conn.execute(event, {"lock": "gone-1", "seq": 1})  # a lock no facility holds
            migrate(url)
            with engine.begin() as conn:
                rows = conn.execute(
                    text("SELECT site, lock_id, boot, seq FROM lock_events ORDER BY id")
                ).all()
                # the same lock and seq in a new boot is another event now
                conn.execute(
                    text(
                        "INSERT INTO lock_events (site, lock_id, boot, seq, lock_ts, kind, "
                        "received_at) VALUES ('gym-a', 'door-1', 7, 1, 200, 'unlocked', 2)"
                    )
                )
            with pytest.raises(IntegrityError), engine.begin() as conn:
                conn.execute(
                    text(
                        "INSERT INTO lock_events (site, lock_id, boot, seq, lock_ts, kind, "
                        "received_at) VALUES ('gym-a', 'door-1', 7, 1, 300, 'unlocked', 3)"
                    )
                )
            command.downgrade(alembic_config(url), "0007")  # the first of the pair stays
            with engine.connect() as conn:
                kept = conn.execute(text("SELECT lock_id, lock_ts FROM lock_events ORDER BY id"))
                kept_rows = [tuple(r) for r in kept]
        finally:
            engine.dispose()
    assert [tuple(r) for r in rows] == [("gym-a", "door-1", 0, 1), ("", "gone-1", 0, 1)]
    assert kept_rows == [("door-1", 100), ("gone-1", 100)]
