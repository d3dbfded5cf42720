"""A paired lock's PIN key and offline secret, taken from its gateway over MQTT.

``denen provision lock pair`` makes a lock's keys on the Pi and sends the two the cloud
needs straight here, sealed to the cloud's pairing key (:mod:`protocol.sealed`), on the
``pairing`` topic of the Pi's own gateway; nothing of them is written on the Pi. The cloud
opens them with its private key (the additional data binds them to the topic's site and
gateway and the lock) and stores them in the lock's row, only when the lock is registered
at a facility of that site and gateway (``denen-cloud add-lock`` first). A lock registered
elsewhere is someone else's door: refused like any message speaking for it
(:mod:`cloud.gym.ownership`), with a ``foreign_device`` alert. Each request gets an answer
(stored, or why not and what to do) for the technician's command to print.

The key pair is a PEM file (``DENEN_CLOUD_PAIRING_KEY_PATH``, 0600), made on the first
start; its public half goes out retained on :data:`protocol.topics.PAIRING_KEY`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.bus import ChangeBus
from cloud.fleet.ownership import RefusedClaims, refuse
from cloud.gym.access import AccessChanged, bump_version
from cloud.gym.models import Facility, Lock
from cloud.gym.ownership import foreign
from cloud.settings import CloudSettings
from protocol.clock import Clock
from protocol.errors import MessageError
from protocol.messages import LockKeysData, LockKeysResult
from protocol.sealed import associated_data, open_sealed

log = logging.getLogger(__name__)

LOCK_KEYS_WHAT = "lock keys"  # in the refused counts and the foreign_device alert


def load_pairing_key(path: Path) -> X25519PrivateKey:
    """The cloud's pairing key from ``path``; a new one written there (0600) when there is
    none yet."""
    if not path.exists():
        key = X25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        log.info("made the lock pairing key %s", path)
        return key
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, X25519PrivateKey):
        raise TypeError(f"{path} is not an X25519 key: delete it to have a new one made")
    return loaded


@dataclass(frozen=True, slots=True)
class KeysArrival:
    """One sealed delivery: the site and gateway of its topic, its envelope id, its data."""

    site: str
    gateway: str
    request_id: str
    data: LockKeysData


@dataclass(frozen=True, slots=True)
class KeysAnswer:
    """What to tell ``site``/``gateway`` about one delivery."""

    site: str
    gateway: str
    result: LockKeysResult


class LockKeyService:
    """Opens and stores lock keys from pairings (see the module)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        settings: CloudSettings,
        bus: ChangeBus,
        *,
        key: X25519PrivateKey,
        refused: RefusedClaims,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._settings = settings
        self._bus = bus
        self._key = key
        self.refused = refused

    @property
    def public_key(self) -> bytes:
        return self._key.public_key().public_bytes_raw()

    def store(self, arrivals: Sequence[KeysArrival]) -> list[KeysAnswer]:
        """Store what opens and belongs to its sender, in one transaction; an answer for
        each arrival."""
        answers: list[KeysAnswer] = []
        changed: set[tuple[str, str]] = set()
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            claims = {(a.site, a.gateway, a.data.lock_id) for a in arrivals}
            refused = foreign(session, claims)
            refuse(
                session,
                self._settings,
                now,
                sorted(refused),
                what=LOCK_KEYS_WHAT,
                counter=self.refused,
                dropped=sum((a.site, a.gateway, a.data.lock_id) in refused for a in arrivals),
            )
            for a in arrivals:
                error: str | None
                if (a.site, a.gateway, a.data.lock_id) in refused:
                    error = (
                        f"lock {a.data.lock_id} belongs to another site or gateway; its keys "
                        "were not stored. Check the lock id (--id)"
                    )
                else:
                    error = self._store_one(session, a)
                if error is None:
                    changed.add((a.site, a.gateway))
                stored = LockKeysResult(
                    request_id=a.request_id,
                    lock_id=a.data.lock_id,
                    stored=error is None,
                    error=error,
                )
                answers.append(KeysAnswer(a.site, a.gateway, stored))
            for site, gateway in changed:
                bump_version(session, site, gateway, now)  # the PIN tags change with the key
        for site, gateway in sorted(changed):
            self._bus.publish(AccessChanged(site, gateway))
        return answers

    def _store_one(self, session: Session, a: KeysArrival) -> str | None:
        """Store one delivery's keys; None, or why not (for the technician)."""
        lock_id = a.data.lock_id
        try:
            keys = open_sealed(
                self._key, a.data.sealed_bytes(), associated_data(a.site, a.gateway, lock_id)
            )
        except (MessageError, ValueError) as exc:
            log.warning("lock keys for %s from %s/%s refused: %s", lock_id, a.site, a.gateway, exc)
            return f"{exc}; pair the lock again"
        lock = session.scalars(
            select(Lock)
            .join(Facility, Facility.id == Lock.facility_id)
            .where(Lock.lock_id == lock_id, Facility.site == a.site, Facility.gateway == a.gateway)
        ).one_or_none()
        if lock is None:
            log.warning(
                "lock keys for %s from %s/%s not stored: no such lock registered there",
                lock_id,
                a.site,
                a.gateway,
            )
            return (
                f"lock {lock_id} is not registered at {a.site}/{a.gateway}: ask city "
                f"operations to run `denen-cloud add-lock {lock_id} --facility FACILITY_ID` "
                f"(a facility of {a.site}/{a.gateway}), then pair the lock again"
            )
        lock.pin_key = keys.pin_key.hex()
        lock.offline_secret = keys.offline_secret.hex()
        log.info("stored the keys of lock %s from its pairing at %s/%s", lock_id, a.site, a.gateway)
        return None
