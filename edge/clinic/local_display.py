"""What the clinic's displays show: the cloud's display state, or, while the agent runs the
queues, the local queues' calls around the cloud's announcement, brightness and standby
schedule (:func:`protocol.clinic_sync.display_contents`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from edge.clinic.day_store import DayStore
from edge.clinic.desk_state import DeskState
from edge.store import Store
from protocol.clinic_sync import display_contents
from protocol.clock import Clock
from protocol.messages import DisplayStateData

# local display state versions: far above the cloud's, so the two never meet
LOCAL_DISPLAY_VERSIONS = 2**31


class DisplayListener(Protocol):
    def state_stored(self) -> None: ...


class LocalDisplays:
    """The display state the display coordinators read, and telling them it changed."""

    def __init__(
        self,
        *,
        display_store: Store,
        store: DayStore,
        clock: Clock,
        state: DeskState,
        listeners: Sequence[DisplayListener] = (),
    ) -> None:
        self.display_store = display_store
        self.store = store
        self.clock = clock
        self.state = state
        self.listeners = listeners
        self._local_display: DisplayStateData | None = None

    def display_state(self) -> DisplayStateData | None:
        """What the displays show: the cloud's state, or the local queues' while the agent
        runs them (the display coordinators read this)."""
        if self.state.local is None:
            return self.display_store.display_state()
        if self._local_display is None:
            self._local_display = self._make_local_display()
        return self._local_display

    def forget_local(self) -> None:
        """The local queues (or the cloud's face around them) changed: rebuild on next read."""
        self._local_display = None

    def refresh(self) -> None:
        self.forget_local()
        self.tell()

    def tell(self) -> None:
        for display in self.listeners:
            display.state_stored()

    def _make_local_display(self) -> DisplayStateData:
        base = self.display_store.display_state()
        local = self.state.local
        assert local is not None  # only asked while the agent runs the queues
        contents = display_contents(
            self.state.writable_queues(), local.displays, self.clock.now(), base=base
        )
        listed = {c.display_id for c in contents}
        if base is not None:  # displays the clinic state does not map keep the cloud's face
            contents += [d for d in base.displays if d.display_id not in listed]
        seq = self.store.next_display_seq() % LOCAL_DISPLAY_VERSIONS
        return DisplayStateData(version=LOCAL_DISPLAY_VERSIONS + seq, displays=contents)


__all__ = ["LOCAL_DISPLAY_VERSIONS", "DisplayListener", "LocalDisplays"]
