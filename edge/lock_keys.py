"""The agent's lock key store: one file per paired lock, ``{state_dir}/locks/{id}.key.json``.

``denen provision lock pair`` writes a lock's file; the agent reads it and keeps its send
counter in it. Files are 0600 in a 0700 directory, written atomically (temp file, fsync,
rename), and refused when group or others can read them. Only the link key lives here:
the PIN key and the offline secret go to the cloud, and the agent has no use for them.

The send counter is persisted in blocks of :data:`COUNTER_BLOCK`: before a frame takes a
counter past the stored value, the store moves the value a block ahead. A crash therefore
skips at most a block, and a counter is never used twice. The agent keeps the lock's
counter in memory only: replies are bound to the request they answer
(:mod:`protocol.lock_auth`), so an old reply cannot be replayed after a restart anyway.

Displays are paired the same way and their keys kept the same way, in their own directory
(:class:`edge.display_keys.DisplayKeyStore`): a record's ``lock_id`` is then the display's id.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar, Generic

from edge.errors import KeyStoreError
from protocol.ids import SLUG_RE
from protocol.lock_auth import KEY_LEN, Direction, F, LinkAuth, SealedLink
from protocol.lock_wire import LockFrame

COUNTER_BLOCK = 1024
KEY_DIR = "locks"


@dataclass(frozen=True, slots=True)
class LockKeyRecord:
    """One paired lock as the agent knows it. ``repr`` hides the key."""

    lock_id: str
    link_key: bytes = field(repr=False)
    send_counter: int  # every counter up to this one may have been used
    paired_at: int
    model: str = ""
    firmware: str = ""

    def to_json(self, id_field: str = "lock_id") -> dict[str, object]:
        return {
            id_field: self.lock_id,
            "key_id": 1,
            "link_key": self.link_key.hex(),
            "send_counter": self.send_counter,
            "paired_at": self.paired_at,
            "model": self.model,
            "firmware": self.firmware,
        }

    @classmethod
    def from_json(cls, raw: dict[str, object], id_field: str = "lock_id") -> LockKeyRecord:
        """Inverse of :meth:`to_json`; raises ``ValueError``, ``KeyError`` or ``TypeError``."""
        key = bytes.fromhex(str(raw["link_key"]))
        if len(key) != KEY_LEN:
            raise ValueError(f"link_key must be {KEY_LEN} bytes")
        counter, paired_at = raw["send_counter"], raw["paired_at"]
        if not isinstance(counter, int) or not isinstance(paired_at, int):
            raise TypeError("send_counter and paired_at must be integers")
        return cls(
            str(raw[id_field]),
            key,
            counter,
            paired_at,
            str(raw.get("model", "")),
            str(raw.get("firmware", "")),
        )


class LockKeyStore:
    """The key files under ``state_dir/locks``."""

    KEY_DIR: ClassVar[str] = KEY_DIR
    NOUN: ClassVar[str] = "lock"  # what the files key, in messages and the id field

    def __init__(self, state_dir: Path) -> None:
        self.directory = state_dir / self.KEY_DIR

    def path(self, lock_id: str) -> Path:
        """Where the key of ``lock_id`` lives."""
        if not SLUG_RE.fullmatch(lock_id):
            raise KeyStoreError(f"{self.NOUN} id {lock_id!r} is not a slug [a-z0-9-]")
        return self.directory / f"{lock_id}.key.json"

    def load(self, lock_id: str) -> LockKeyRecord | None:
        """The record of ``lock_id``; ``None`` when the lock was never paired here."""
        path, noun = self.path(lock_id), self.NOUN
        try:
            mode = path.stat().st_mode
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise KeyStoreError(f"cannot read the {noun} key {path}: {exc.strerror}") from exc
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyStoreError(
                f"{path} can be read by other users: `chmod 600 {path}`, "
                f"and pair the {noun} again if someone may have copied it"
            )
        try:
            raw = json.loads(text)
            record = LockKeyRecord.from_json(raw, f"{noun}_id")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise KeyStoreError(
                f"{path} is not a {noun} key file ({type(exc).__name__}): pair the {noun} again"
            ) from None
        if record.lock_id != lock_id:
            raise KeyStoreError(f"{path} holds the key of {record.lock_id}, not {lock_id}")
        return record

    def save(self, record: LockKeyRecord) -> None:
        """Write ``record`` atomically, readable by its owner only."""
        path = self.path(record.lock_id)
        tmp = path.with_name(path.name + ".tmp")
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(record.to_json(f"{self.NOUN}_id"), out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            raise KeyStoreError(f"cannot write the {self.NOUN} key {path}: {exc.strerror}") from exc

    def link(self, record: LockKeyRecord) -> AgentLink[LockFrame]:
        """An authenticated link to the lock of ``record`` that persists its counter here."""
        auth = LinkAuth(record.link_key, Direction.TO_LOCK, send_counter=record.send_counter)
        return AgentLink(self, record, auth)


class AgentLink(Generic[F]):
    """The agent's end of one device link: seals requests, checks answers."""

    def __init__(self, store: LockKeyStore, record: LockKeyRecord, auth: SealedLink[F]) -> None:
        self.store = store
        self.record = record
        self.auth = auth

    def seal(self, frame: F) -> F:
        """``frame`` with the next counter and its MAC; persists a new block first if due."""
        if self.auth.send_counter >= self.record.send_counter:
            self.record = replace(self.record, send_counter=self.auth.send_counter + COUNTER_BLOCK)
            self.store.save(self.record)
        return self.auth.seal(frame)

    def check(self, frame: F, *, bound: int = 0) -> F:
        """Accept an answer to the request with counter ``bound`` (0: unsolicited)."""
        return self.auth.check(frame, bound=bound)
