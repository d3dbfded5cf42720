"""The agent's display key store: one file per paired display,
``{state_dir}/displays/{id}.key.json``.

``denen provision display pair`` writes a display's file; the agent reads it and seals
every frame to that display with it. Kept exactly as lock keys are
(:mod:`edge.lock_keys`: 0600 files in a 0700 directory, written atomically, refused when
others can read them, the send counter persisted in blocks), in a directory of its own.
"""

from __future__ import annotations

from typing import ClassVar

from edge.lock_keys import AgentLink, LockKeyRecord, LockKeyStore
from protocol.display_auth import DisplayDirection, DisplayLinkAuth
from protocol.display_wire import DisplayFrame

KEY_DIR = "displays"


class DisplayKeyStore(LockKeyStore):
    """The key files under ``state_dir/displays``; a record's ``lock_id`` is the display's."""

    KEY_DIR: ClassVar[str] = KEY_DIR
    NOUN: ClassVar[str] = "display"

    def display_link(self, record: LockKeyRecord) -> AgentLink[DisplayFrame]:
        """An authenticated link to the display of ``record``; persists its counter here."""
        auth = DisplayLinkAuth(
            record.link_key, DisplayDirection.TO_DISPLAY, send_counter=record.send_counter
        )
        return AgentLink(self, record, auth)
