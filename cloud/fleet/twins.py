"""Twins: what the cloud wants a gateway or device to run, next to what it reports.

The agent's twin is its config (:class:`~protocol.messages.AgentConfigData`), versioned,
published retained on the gateway's ``config`` topic: every change makes a new version, so
a rollback is the old content under a newer version (the agent ignores anything not newer).
The agent reports the version it runs (and a refusal) in its telemetry. A device's twin is
its firmware: desired when a rollout sent an image, reported by telemetry.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.bus import ChangeBus
from cloud.errors import InvalidRequestError, NotFoundError
from cloud.fleet.audit import audit
from cloud.fleet.changes import ConfigReady
from cloud.fleet.kinds import Subject, SubjectKind
from cloud.fleet.models import Gateway, Twin
from cloud.fleet.views import TwinView
from cloud.settings import CloudSettings
from protocol import topics
from protocol.clock import Clock
from protocol.messages import AgentConfigData, MessageType, TelemetryData, make

# the fields of AgentConfigData a change may set (``version`` is the cloud's to count)
CONFIG_FIELDS = frozenset(AgentConfigData.model_fields) - {"version"}


def twin_view(t: Twin) -> TwinView:
    return TwinView(
        desired=t.desired,
        desired_version=t.desired_version,
        desired_at=t.desired_at,
        reported=t.reported,
        reported_version=t.reported_version,
        reported_at=t.reported_at,
        diverged_since=t.diverged_since,
        in_sync=t.diverged_since is None,
    )


def prime_twins(session: Session, sites: Iterable[str]) -> None:
    """Load the twins of many sites in one query (a batch of reports): a twin of those
    sites is then found, or known to be missing, without a query."""
    cache: dict[str, dict[tuple[SubjectKind, str], Twin]] = session.info.setdefault(
        "fleet_twins", {}
    )
    todo = [site for site in dict.fromkeys(sites) if site not in cache]
    for site in todo:
        cache[site] = {}
    if todo:
        for twin in session.scalars(select(Twin).where(Twin.site.in_(todo))):
            cache[twin.site][(twin.kind, twin.subject)] = twin


def _primed(session: Session, site: str) -> dict[tuple[SubjectKind, str], Twin] | None:
    primed: dict[str, dict[tuple[SubjectKind, str], Twin]] = session.info.get("fleet_twins", {})
    return primed.get(site)


def _find(session: Session, site: str, kind: SubjectKind, subject: str) -> Twin | None:
    primed = _primed(session, site)
    if primed is None:
        return session.get(Twin, (site, kind, subject))
    return primed.get((kind, subject))


def _twin(session: Session, site: str, gateway: str, kind: SubjectKind, subject: str) -> Twin:
    twin = _find(session, site, kind, subject)
    if twin is None:
        twin = Twin(site=site, kind=kind, subject=subject, gateway=gateway)
        session.add(twin)
        primed = _primed(session, site)
        if primed is not None:  # a pending twin is not in the identity map yet
            primed[(kind, subject)] = twin
    twin.gateway = gateway
    return twin


def _diverge(twin: Twin, now: int, differs: bool) -> None:
    if not differs:
        twin.diverged_since = None
    elif twin.diverged_since is None:
        twin.diverged_since = now


def desired_config(session: Session, site: str, gateway: str) -> AgentConfigData | None:
    """The gateway's desired agent config, if the cloud ever set one."""
    return twin_config(_find(session, site, SubjectKind.GATEWAY, gateway))


def twin_config(twin: Twin | None) -> AgentConfigData | None:
    """The desired agent config a gateway's twin holds, if the cloud ever set one."""
    if twin is None or twin.desired is None:
        return None
    return AgentConfigData.model_validate(twin.desired)


def config_fields(config: AgentConfigData | None) -> dict[str, Any]:
    """The content of a config without its version (what a rollback restores)."""
    if config is None:
        return {}
    out = config.model_dump(mode="json")
    out.pop("version", None)
    return out


def merged_config(current: AgentConfigData | None, changes: dict[str, Any]) -> AgentConfigData:
    """``current`` with ``changes`` (top-level fields; a nested section is replaced as a
    whole, null resets a field to the site file's value) as the next version."""
    unknown = set(changes) - CONFIG_FIELDS
    if unknown:
        raise InvalidRequestError(
            f"unknown config field(s) {', '.join(sorted(unknown))}; "
            f"the fields are {', '.join(sorted(CONFIG_FIELDS))}"
        )
    version = 1 if current is None else current.version + 1
    try:
        return AgentConfigData.model_validate(
            {**config_fields(current), **changes, "version": version}
        )
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)[:5]
        )
        raise InvalidRequestError(f"invalid config: {reasons}") from None


def put_desired_config(
    session: Session, site: str, gateway: str, config: AgentConfigData, now: int
) -> None:
    """Make ``config`` the gateway's desired config (the caller tells the notifier after
    the commit)."""
    twin = _twin(session, site, gateway, SubjectKind.GATEWAY, gateway)
    twin.desired = config.model_dump(mode="json")
    twin.desired_version = config.version
    twin.desired_at = now
    _diverge(twin, now, twin.reported_version != config.version)


def report_agent(
    session: Session, site: str, gateway: str, telemetry: TelemetryData, now: int
) -> Twin:
    """What the agent says it runs: the config version, its hash, a refusal; its twin."""
    twin = _twin(session, site, gateway, SubjectKind.GATEWAY, gateway)
    twin.reported = {
        "config_version": telemetry.config_version,
        "config_hash": telemetry.config_hash,
        "config_error": telemetry.config_error,
    }
    twin.reported_version = telemetry.config_version
    twin.reported_at = now
    _diverge(
        twin,
        now,
        twin.desired_version is not None and telemetry.config_version != twin.desired_version,
    )
    return twin


def desire_firmware(session: Session, device: Subject, version: str, now: int) -> None:
    """A rollout sent ``version`` to the device."""
    twin = _twin(session, device.site, device.gateway, device.kind, device.id)
    twin.desired = {"firmware": version}
    twin.desired_at = now
    _diverge(twin, now, not firmware_matches(_firmware(twin.reported), version))


def report_firmware(session: Session, device: Subject, firmware: str, now: int) -> None:
    """The firmware a device reports it runs (``"sim-1.2.0"`` matches a desired ``1.2.0``)."""
    twin = _twin(session, device.site, device.gateway, device.kind, device.id)
    twin.reported = {"firmware": firmware}
    twin.reported_at = now
    wanted = _firmware(twin.desired)
    _diverge(twin, now, wanted is not None and not firmware_matches(firmware, wanted))


def firmware_matches(reported: str | None, version: str) -> bool:
    """Whether a device reporting ``reported`` runs image version ``version``."""
    if reported is None:
        return False
    return reported == version or reported.endswith(f"-{version}")


def _firmware(doc: dict[str, Any] | None) -> str | None:
    value = None if doc is None else doc.get("firmware")
    return value if isinstance(value, str) else None


def heartbeat_interval(config: AgentConfigData | None, settings: CloudSettings) -> float:
    """How often the gateway's agent sends telemetry: its desired config's interval, else
    the agents' default."""
    if config is not None and config.telemetry_interval_s is not None:
        return config.telemetry_interval_s
    return settings.fleet_telemetry_interval_s


def sync_interval(config: AgentConfigData | None, settings: CloudSettings) -> float:
    """How often the gateway's locks are synced in full."""
    if config is not None and config.sync.full_sync_interval_s is not None:
        return config.sync.full_sync_interval_s
    return settings.fleet_sync_interval_s


def desired_configs(
    session: Session, sites: Collection[str] | None = None
) -> dict[tuple[str, str], AgentConfigData]:
    """Every gateway's desired config (of ``sites`` only, when given), by (site, gateway)."""
    query = select(Twin.site, Twin.subject, Twin.desired).where(
        Twin.kind == SubjectKind.GATEWAY, Twin.desired.is_not(None)
    )
    if sites is not None:
        query = query.where(Twin.site.in_(list(sites)))
    return {(s, g): AgentConfigData.model_validate(d) for s, g, d in session.execute(query)}


class TwinService:
    """Set the agent config of a gateway; hand the MQTT side what to publish."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock, bus: ChangeBus) -> None:
        self._sessions = sessions
        self._clock = clock
        self._bus = bus

    def set_config(
        self, site: str, gateway: str, changes: dict[str, Any], actor: str
    ) -> AgentConfigData:
        """A new desired config version with ``changes``; published retained at once."""
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            if session.get(Gateway, (site, gateway)) is None:
                raise NotFoundError(f"no gateway {site}/{gateway} has reported yet")
            config = merged_config(desired_config(session, site, gateway), changes)
            put_desired_config(session, site, gateway, config, now)
            audit(
                session,
                now,
                actor,
                "config.set",
                site=site,
                subject=gateway,
                detail={"version": config.version, "changes": changes},
            )
        self._bus.publish(ConfigReady(site, gateway))
        return config

    def configured(self) -> list[tuple[str, str]]:
        """Every gateway with a desired config (published again at each connect)."""
        with self._sessions() as session:
            rows = session.execute(
                select(Twin.site, Twin.subject).where(
                    Twin.kind == SubjectKind.GATEWAY, Twin.desired.is_not(None)
                )
            )
            return [(site, gw) for site, gw in rows]

    def config_message(self, site: str, gateway: str) -> tuple[str, bytes] | None:
        """``(topic, payload)`` of the gateway's desired config, to publish retained."""
        with self._sessions() as session:
            config = desired_config(session, site, gateway)
        if config is None:
            return None
        payload = make(MessageType.AGENT_CONFIG, config, ts=self._clock.now())
        return topics.config(site, gateway), payload
