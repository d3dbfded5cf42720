"""The agent config twin: the desired config the cloud keeps retained on ``config``.

The site file (:mod:`edge.config`) is what the technician installed; the twin
(:class:`~protocol.messages.AgentConfigData`, versioned) changes, while the agent runs,
the few settings that are safe to change remotely: the telemetry interval, the lock sync
timing, the displays' brightness and standby, the clinic hours that keep display updates
out of opening time, and the log level. A field the twin leaves null keeps the site
file's value.

A newer version is checked, stored (it is applied again at the next start, before the
broker is reachable) and applied; the agent reports its version and a hash of the whole
effective config in its telemetry. A config it cannot take (malformed, or settings that
do not fit together) is refused: the old one keeps running and the telemetry says why.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from edge.config import SiteConfig, SyncConfig
from edge.devices.display_coordinator import DisplayCoordinator
from edge.devices.lock_coordinator import LockCoordinator
from edge.errors import StoreError
from edge.store import Store
from edge.sync_schedule import SyncSchedule
from protocol import messages
from protocol.errors import MessageError
from protocol.messages import AgentConfigData, DisplaySettings, LogLevel, OpeningHours
from protocol.tracing import traced

log = logging.getLogger(__name__)

ERROR_MAX = 300
# the loggers a twin's log_level sets: the agent's own, not the libraries'
AGENT_LOGGER = "edge"


class EffectiveConfig(BaseModel):
    """What the agent runs with: the site file overlaid with the twin."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    telemetry_interval_s: float
    sync: SyncConfig
    display: DisplaySettings
    clinic_hours: OpeningHours | None
    log_level: LogLevel | None

    def digest(self) -> str:
        """SHA-256 of the canonical JSON, first 16 hex digits (``config_hash``)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class ConfigRefused(ValueError):  # noqa: N818 - a refusal, reported, not a failure
    """The twin's settings do not fit together; the message says which."""


def effective(site: SiteConfig, twin: AgentConfigData | None) -> EffectiveConfig:
    """The config the agent runs with; :class:`ConfigRefused` when the twin does not fit."""
    if twin is None:
        return EffectiveConfig(
            telemetry_interval_s=site.telemetry.interval_s,
            sync=site.sync,
            display=DisplaySettings(),
            clinic_hours=None,
            log_level=None,
        )
    sync = site.sync.model_copy(update=twin.sync.model_dump(exclude_none=True))
    if sync.jitter_s >= sync.full_sync_interval_s:
        raise ConfigRefused(
            f"sync.jitter_s ({sync.jitter_s:g}) must be less than "
            f"sync.full_sync_interval_s ({sync.full_sync_interval_s:g})"
        )
    return EffectiveConfig(
        telemetry_interval_s=twin.telemetry_interval_s or site.telemetry.interval_s,
        sync=sync,
        display=twin.display,
        clinic_hours=twin.clinic_hours,
        log_level=twin.log_level,
    )


def _version_in(payload: bytes | bytearray) -> int | None:
    # a refused config is reported by its version when one can be read at all
    try:
        version = json.loads(payload)["data"]["version"]
    except (ValueError, TypeError, KeyError):
        return None
    return version if isinstance(version, int) and not isinstance(version, bool) else None


class ConfigTwin:
    """Applies the desired config to the running agent; see the module docstring."""

    def __init__(
        self,
        site: SiteConfig,
        *,
        store: Store,
        schedule: SyncSchedule,
        locks: Sequence[LockCoordinator],
        displays: Sequence[DisplayCoordinator],
    ) -> None:
        self.site = site
        self.store = store
        self.schedule = schedule
        self.locks = locks
        self.displays = displays
        self.changed = asyncio.Event()  # set on every apply or refusal (telemetry reports it)
        self.version: int | None = None
        self.error: str | None = None
        self.current = effective(site, None)

    @property
    def digest(self) -> str:
        return self.current.digest()

    def load(self) -> None:
        """Apply the stored twin (at start, once the store is open)."""
        try:
            stored = self.store.agent_config()
        except (StoreError, ValueError) as exc:
            self._refuse(None, f"the stored config cannot be read ({exc})")
            return
        if stored is None:
            return
        try:
            config = effective(self.site, stored)
        except ConfigRefused as exc:  # the site file changed under it
            self._refuse(stored.version, str(exc))
            return
        self._apply(stored.version, config)

    def received(self, payload: bytes | bytearray) -> None:
        """A config arrived on the ``config`` topic (thin MQTT handler hands it over)."""
        if not payload:
            return  # an empty retained message clears the topic: keep what runs
        try:
            env, data = messages.parse(payload)
        except MessageError as exc:
            self._refuse(_version_in(payload), str(exc))
            return
        if not isinstance(data, AgentConfigData):
            self._refuse(None, f"a {type(data).__name__} message on the config topic")
            return
        with traced(env.id):
            self._take(data)

    def _take(self, data: AgentConfigData) -> None:
        if self.version is not None and data.version <= self.version:
            log.info("agent config v%d is not newer than v%d; ignored", data.version, self.version)
            return
        try:
            config = effective(self.site, data)
        except ConfigRefused as exc:
            self._refuse(data.version, str(exc))
            return
        try:
            self.store.save_agent_config(data)
        except StoreError as exc:
            self._refuse(data.version, str(exc))
            return
        self._apply(data.version, config)

    # ------------------------------------------------------------ internals

    def _refuse(self, version: int | None, reason: str) -> None:
        which = "config" if version is None else f"config v{version}"
        kept = "site file" if self.version is None else f"v{self.version}"
        self.error = f"{which} refused: {reason}"[:ERROR_MAX]
        log.error("agent %s; keeping the %s", self.error, kept)
        self._tell()

    def _apply(self, version: int, config: EffectiveConfig) -> None:
        self.schedule.retime(config.sync)
        for lock in self.locks:
            lock.sync_config = config.sync
        for display in self.displays:
            display.apply_settings(config.display)
        level: int | str = config.log_level or logging.NOTSET
        logging.getLogger(AGENT_LOGGER).setLevel(level)
        self.current, self.version, self.error = config, version, None
        log.info("agent config v%d applied (effective config %s)", version, config.digest())
        self._tell()

    def _tell(self) -> None:
        self.changed.set()

    def report(self) -> dict[str, Any]:
        """The telemetry fields of the twin."""
        return {
            "config_version": self.version,
            "config_hash": self.digest,
            "config_error": self.error,
        }
