"""Rollouts of lock or display firmware, or of agent config, in rings with a health gate.

A rollout's rings are fixed when it is created: the sites named for each ring (the rest
of the sites with targets form the last ring), or else each site's default ring (0: a few
sites, 1: more, 2: all the rest). The current ring's targets are sent:

- firmware: a ``firmware-update`` command per device of the image's kind and model (ops
  register models with ``PUT …/devices/{id}``);
- config: the fields merged into each gateway's desired config, a new version published
  retained on ``config``.

A target is deferred, and tried again by the periodic pass, while its gateway is offline,
while a lock is in use (the gym says: a booking in progress or starting within
``fleet_booking_guard_s``, through :class:`cloud.fleet.ports.LockUse`), or
while a display's clinic is open (its gateway's ``clinic_hours``, else 08:00-18:00 Monday
to Saturday).

The gate (:func:`cloud.fleet.rules.ring_gate`): every target of the ring reports success
and the new version (the firmware reply, the config version in telemetry), and no critical
alert opens on a target (or its gateway) from the ring's start until ``soak_s`` after the
last success. Then the next ring starts (or, without ``auto_advance``, waits for
``advance``). When the gate fails the rollout halts:

- config: every gateway it changed gets its previous config back, as a newer version
  (the agent only takes newer versions), unless someone changed its config since;
- firmware: targets not yet sent are cancelled and the affected devices are listed. There
  is no automatic downgrade: devices refuse an image that is not newer (anti-rollback), so
  going back means building the old payload as a newer version (``denen release sign``
  with a higher version) and rolling that out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.bus import ChangeBus
from cloud.core.models import Site
from cloud.core.views import UserView
from cloud.errors import ConflictError, InvalidRequestError, NotFoundError
from cloud.fleet import rules
from cloud.fleet.audit import audit
from cloud.fleet.changes import CommandReady, ConfigReady
from cloud.fleet.commands import new_command
from cloud.fleet.kinds import (
    CommandState,
    DeviceKind,
    RingPhase,
    RolloutKind,
    RolloutState,
    Severity,
    Subject,
    SubjectKind,
    TargetState,
)
from cloud.fleet.models import (
    Alert,
    Command,
    Device,
    FirmwareImageRow,
    Gateway,
    Rollout,
    RolloutTarget,
    Twin,
)
from cloud.fleet.ports import NO_ANSWERS, FleetPorts
from cloud.fleet.sites import check_slug
from cloud.fleet.twins import (
    config_fields,
    desire_firmware,
    desired_config,
    firmware_matches,
    merged_config,
    put_desired_config,
)
from cloud.fleet.views import RingView, RolloutView, TargetView
from cloud.settings import CloudSettings
from protocol.clock import Clock
from protocol.messages import AgentConfigData, CommandVerb, FirmwareUpdateResult

_FAILED_REPLIES = (CommandState.ERROR, CommandState.REJECTED, CommandState.EXPIRED)
DEFAULT_RINGS = (0, 1, 2)


@dataclass(frozen=True, slots=True)
class RolloutRequest:
    """``rings``: the sites of the first rings (the rest follow in a last ring); None: the
    sites' default rings. ``config``: agent config fields (firmware: ``firmware_image_id``)."""

    kind: str
    name: str
    firmware_image_id: int | None = None
    config: dict[str, Any] | None = None
    rings: Sequence[Sequence[str]] | None = None
    soak_s: int | None = None
    auto_advance: bool = True


@dataclass
class _Outbox:
    """What to tell the MQTT side once the transaction committed."""

    commands: list[str]
    configs: list[tuple[str, str]]


class RolloutService:
    """Create rollouts and move them along (``step_all`` from the periodic pass and after
    replies and telemetry)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        settings: CloudSettings,
        bus: ChangeBus,
        ports: FleetPorts = NO_ANSWERS,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._settings = settings
        self._bus = bus
        self._ports = ports

    # ------------------------------------------------------------------ create

    def create(self, req: RolloutRequest, user: UserView) -> RolloutView:
        """Fix the rings and targets, and send the first ring."""
        try:
            kind = RolloutKind(req.kind)
        except ValueError:
            raise InvalidRequestError("kind is firmware or config") from None
        name = req.name.strip()
        if not 1 <= len(name) <= 200:
            raise InvalidRequestError("a rollout name has 1 to 200 characters")
        soak = self._settings.fleet_rollout_soak_s if req.soak_s is None else req.soak_s
        if not 0 <= soak <= 7 * 86400:
            raise InvalidRequestError("soak_s is 0 to 604800 seconds")
        now = int(self._clock.now())
        out = _Outbox([], [])
        with self._sessions.begin() as session:
            if kind is RolloutKind.FIRMWARE:
                if req.firmware_image_id is None or req.config is not None:
                    raise InvalidRequestError("a firmware rollout names firmware_image_id only")
                image = session.get(FirmwareImageRow, req.firmware_image_id)
                if image is None:
                    raise NotFoundError(f"no firmware image #{req.firmware_image_id}")
                candidates = self._firmware_targets(session, image)
            else:
                if req.config is None or req.firmware_image_id is not None:
                    raise InvalidRequestError("a config rollout names config fields only")
                merged_config(None, req.config)  # refuses unknown fields and bad values
                candidates = [
                    (g.site, g.gateway, None)
                    for g in session.scalars(
                        select(Gateway).order_by(Gateway.site, Gateway.gateway)
                    )
                ]
            rings = self._rings(session, [c[0] for c in candidates], req.rings)
            ring_of = {site: i for i, sites in enumerate(rings) for site in sites}
            rollout = Rollout(
                kind=kind,
                name=name,
                firmware_image_id=req.firmware_image_id,
                config=req.config,
                rings=rings,
                current_ring=0,
                phase=RingPhase.SENDING,
                state=RolloutState.RUNNING,
                soak_s=soak,
                auto_advance=req.auto_advance,
                ring_started_at=now,
                created_by=user.username,
                created_at=now,
                updated_at=now,
            )
            session.add(rollout)
            session.flush()
            session.add_all(
                RolloutTarget(
                    rollout_id=rollout.id,
                    ring=ring_of[site],
                    site=site,
                    gateway=gateway,
                    device_id=device_id,
                    state=TargetState.WAITING,
                    attempts=0,
                )
                for site, gateway, device_id in candidates
            )
            session.flush()
            audit(
                session,
                now,
                user.username,
                "rollout.create",
                subject=f"rollout:{rollout.id}",
                detail={"kind": kind.value, "name": name, "rings": rings},
            )
            self._advance(session, rollout, now, out)
            rollout_id = rollout.id
        self._tell(out)
        return self.rollout(rollout_id)

    def _firmware_targets(
        self, session: Session, image: FirmwareImageRow
    ) -> list[tuple[str, str, str | None]]:
        devices = session.scalars(
            select(Device)
            .where(Device.kind == image.kind, Device.model == image.model)
            .order_by(Device.site, Device.device_id)
        ).all()
        if not devices:
            raise InvalidRequestError(
                f"no {image.kind.value} of model {image.model!r} is registered; set each "
                "device's model with PUT /api/fleet/sites/{site}/devices/{device_id}"
            )
        return [(d.site, d.gateway, d.device_id) for d in devices]

    @staticmethod
    def _rings(
        session: Session, sites: list[str], named: Sequence[Sequence[str]] | None
    ) -> list[list[str]]:
        order = list(dict.fromkeys(sites))
        if not order:
            raise InvalidRequestError("the rollout has no targets")
        if named is None:
            default: dict[str, int] = {}
            for slug, default_ring in session.execute(select(Site.slug, Site.ring)):
                default[slug] = default_ring
            rings = [[s for s in order if default.get(s, 2) == r] for r in DEFAULT_RINGS]
            return [r for r in rings if r]
        taken: set[str] = set()
        rings = []
        for ring in named:
            for site in ring:
                check_slug("site", site)
                if site not in order:
                    raise InvalidRequestError(f"site {site!r} has nothing this rollout updates")
                if site in taken:
                    raise InvalidRequestError(f"site {site!r} is named in two rings")
                taken.add(site)
            if ring:
                rings.append(list(ring))
        rest = [s for s in order if s not in taken]
        if rest:
            rings.append(rest)
        return rings

    # -------------------------------------------------------------------- moves

    def pause(self, rollout_id: int, user: UserView) -> RolloutView:
        """Stop sending and advancing; what was sent still completes."""
        self._move(rollout_id, user, "pause", RolloutState.RUNNING, RolloutState.PAUSED)
        return self.rollout(rollout_id)

    def resume(self, rollout_id: int, user: UserView) -> RolloutView:
        self._move(rollout_id, user, "resume", RolloutState.PAUSED, RolloutState.RUNNING)
        self.step_all()
        return self.rollout(rollout_id)

    def advance(self, rollout_id: int, user: UserView) -> RolloutView:
        """Start the next ring of a rollout whose current ring passed its gate."""
        now = int(self._clock.now())
        out = _Outbox([], [])
        with self._sessions.begin() as session:
            rollout = self._get(session, rollout_id)
            if rollout.state is not RolloutState.RUNNING or rollout.phase is not RingPhase.PASSED:
                raise ConflictError(
                    f"rollout #{rollout_id} is {rollout.state.value}, ring "
                    f"{rollout.current_ring} {rollout.phase.value}: only a running rollout "
                    "whose ring passed its gate can advance"
                )
            audit(
                session,
                now,
                user.username,
                "rollout.advance",
                subject=f"rollout:{rollout_id}",
                detail={"to_ring": rollout.current_ring + 1},
            )
            self._next_ring(rollout, now)
            self._advance(session, rollout, now, out)
        self._tell(out)
        return self.rollout(rollout_id)

    def _move(
        self,
        rollout_id: int,
        user: UserView,
        action: str,
        from_state: RolloutState,
        to_state: RolloutState,
    ) -> None:
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            rollout = self._get(session, rollout_id)
            if rollout.state is not from_state:
                raise ConflictError(
                    f"rollout #{rollout_id} is {rollout.state.value}; only a "
                    f"{from_state.value} one can {action}"
                )
            rollout.state = to_state
            rollout.updated_at = now
            audit(session, now, user.username, f"rollout.{action}", subject=f"rollout:{rollout_id}")

    def step_all(self) -> int:
        """Move every running rollout as far as it can go now; how many changed."""
        now = int(self._clock.now())
        with self._sessions() as session:
            ids = list(
                session.scalars(select(Rollout.id).where(Rollout.state == RolloutState.RUNNING))
            )
        moved = 0
        for rollout_id in ids:
            out = _Outbox([], [])
            with self._sessions.begin() as session:
                rollout = self._get(session, rollout_id, lock=True)
                if rollout.state is RolloutState.RUNNING and self._advance(
                    session, rollout, now, out
                ):
                    moved += 1
            self._tell(out)
        return moved

    # ------------------------------------------------------------------- engine

    def _advance(self, session: Session, rollout: Rollout, now: int, out: _Outbox) -> bool:
        """Resolve sent targets, send the ring's waiting ones, apply the gate; repeat while
        a ring passes and the next starts. True when anything changed."""
        changed = False
        image = (
            None
            if rollout.firmware_image_id is None
            else session.get(FirmwareImageRow, rollout.firmware_image_id)
        )
        while rollout.phase is not RingPhase.PASSED:
            targets = self._ring_targets(session, rollout)
            for target in targets:
                if target.state is TargetState.SENT:
                    changed |= self._resolve(session, target, image, now)
            if rollout.phase is RingPhase.SENDING:
                for target in targets:
                    if target.state in (TargetState.WAITING, TargetState.DEFERRED):
                        changed |= self._send(
                            session, rollout, target, image=image, now=now, out=out
                        )
            verdict = rules.ring_gate(
                rules.GateInput(
                    states=[t.state for t in targets],
                    phase=rollout.phase,
                    ring_done_at=rollout.ring_done_at,
                    soak_s=rollout.soak_s,
                    new_critical_alerts=self._critical_alerts(session, rollout, targets),
                ),
                now,
            )
            if verdict.action == "fail":
                self._halt(
                    session, rollout, f"ring {rollout.current_ring}: {verdict.reason}", now, out
                )
                return True
            if verdict.action == "soak":
                rollout.ring_done_at = now
                rollout.phase = RingPhase.SOAKING
                rollout.updated_at = now
                changed = True
                continue  # a zero soak passes at once
            if verdict.action != "pass":
                return changed
            changed = True
            rollout.updated_at = now
            if rollout.current_ring >= len(rollout.rings) - 1:
                rollout.state = RolloutState.COMPLETED
                audit(session, now, "cloud", "rollout.completed", subject=f"rollout:{rollout.id}")
                return True
            if not rollout.auto_advance:
                rollout.phase = RingPhase.PASSED
                return True
            self._next_ring(rollout, now)
        return changed

    @staticmethod
    def _next_ring(rollout: Rollout, now: int) -> None:
        rollout.current_ring += 1
        rollout.phase = RingPhase.SENDING
        rollout.ring_started_at = now
        rollout.ring_done_at = None
        rollout.updated_at = now

    @staticmethod
    def _ring_targets(session: Session, rollout: Rollout) -> list[RolloutTarget]:
        return list(
            session.scalars(
                select(RolloutTarget)
                .where(
                    RolloutTarget.rollout_id == rollout.id,
                    RolloutTarget.ring == rollout.current_ring,
                )
                .order_by(RolloutTarget.id)
            )
        )

    def _blocked(
        self, session: Session, rollout: Rollout, target: RolloutTarget, now: int
    ) -> str | None:
        gw = session.get(Gateway, (target.site, target.gateway))
        if gw is None or not rules.is_available(gw.state, gw.available):
            return "gateway offline"
        if rollout.kind is RolloutKind.CONFIG or target.device_id is None:
            return None
        device = self._device(session, target)
        if device is None:
            return "device no longer known"
        if device.kind is DeviceKind.LOCK:
            return self._ports.locks.lock_busy(session, device.device_id, now)
        if device.kind is DeviceKind.DISPLAY:
            config = desired_config(session, target.site, target.gateway)
            hours = None if config is None else config.clinic_hours
            if rules.in_clinic_hours(hours, now):
                return "clinic hours"
        return None

    def _send(
        self,
        session: Session,
        rollout: Rollout,
        target: RolloutTarget,
        *,
        image: FirmwareImageRow | None,
        now: int,
        out: _Outbox,
    ) -> bool:
        blocked = self._blocked(session, rollout, target, now)
        if blocked is not None:
            changed = target.state is not TargetState.DEFERRED or target.detail != blocked
            target.state = TargetState.DEFERRED
            target.detail = blocked
            return changed
        target.state = TargetState.SENT
        target.detail = None
        target.attempts += 1
        target.sent_at = now
        actor = f"rollout:{rollout.id}"
        if image is not None:
            device = self._device(session, target)
            assert device is not None  # checked by _blocked
            target.previous = {"firmware": device.firmware}
            key = "lock_id" if device.kind is DeviceKind.LOCK else "display_id"
            command = new_command(
                session,
                now=now,
                site=target.site,
                gateway=target.gateway,
                verb=CommandVerb.FIRMWARE_UPDATE,
                data={key: device.device_id},
                requested_by=actor,
                reason=rollout.name[:200],
                expires_at=now + self._settings.fleet_firmware_ttl_s,
                firmware_image_id=image.id,
                rollout_id=rollout.id,
            )
            target.transaction = command.transaction
            subject = Subject(
                device.site, device.gateway, SubjectKind(device.kind.value), device.device_id
            )
            desire_firmware(session, subject, image.version, now)
            out.commands.append(command.transaction)
            return True
        current = desired_config(session, target.site, target.gateway)
        target.previous = None if current is None else current.model_dump(mode="json")
        config = merged_config(current, rollout.config or {})
        put_desired_config(session, target.site, target.gateway, config, now)
        target.config_version = config.version
        audit(
            session,
            now,
            actor,
            "config.set",
            site=target.site,
            subject=target.gateway,
            detail={"version": config.version, "changes": rollout.config},
        )
        out.configs.append((target.site, target.gateway))
        return True

    def _resolve(
        self,
        session: Session,
        target: RolloutTarget,
        image: FirmwareImageRow | None,
        now: int,
    ) -> bool:
        """Did a sent target succeed (reply or report with the new version) or fail?"""
        if image is not None:
            command = session.scalars(
                select(Command).where(Command.transaction == target.transaction)
            ).first()
            if command is None or command.status in (CommandState.PENDING, CommandState.SENT):
                return False
            if command.status in _FAILED_REPLIES:
                why = command.reply_error or (
                    "no reply in time" if command.replied_at is None else command.status.value
                )
                return _done(target, TargetState.FAILED, f"{command.status.value}: {why}", now)
            try:
                result = FirmwareUpdateResult.model_validate(command.reply_data or {})
            except ValueError:
                return _done(target, TargetState.FAILED, "the reply carries no result", now)
            if not firmware_matches(result.version, image.version):
                return _done(
                    target,
                    TargetState.FAILED,
                    f"reports {result.version}, not {image.version}",
                    now,
                )
            return _done(target, TargetState.SUCCEEDED, f"runs {result.version}", now)
        twin = session.get(Twin, (target.site, SubjectKind.GATEWAY, target.gateway))
        wanted = target.config_version or 0
        sent = target.sent_at or 0
        if twin is not None and twin.reported_at is not None and twin.reported_at >= sent:
            if twin.reported_version is not None and twin.reported_version >= wanted:
                return _done(target, TargetState.SUCCEEDED, f"runs config v{wanted}", now)
            error = (twin.reported or {}).get("config_error")
            if error:
                return _done(target, TargetState.FAILED, f"config v{wanted} refused: {error}", now)
        if now > sent + self._settings.fleet_config_timeout_s:
            return _done(
                target,
                TargetState.FAILED,
                f"no report of config v{wanted} within {self._settings.fleet_config_timeout_s} s",
                now,
            )
        return False

    def _critical_alerts(
        self, session: Session, rollout: Rollout, targets: Sequence[RolloutTarget]
    ) -> int:
        """Critical alerts opened since the ring began on its devices or gateways (config:
        anything behind its gateways)."""
        if rollout.ring_started_at is None or not targets:
            return 0
        alerts = session.scalars(
            select(Alert).where(
                Alert.severity == Severity.CRITICAL,
                Alert.opened_at >= rollout.ring_started_at,
                Alert.site.in_({t.site for t in targets}),
            )
        ).all()
        gateways = {(t.site, t.gateway) for t in targets}
        devices = {(t.site, t.device_id) for t in targets if t.device_id is not None}
        count = 0
        for a in alerts:
            if a.subject_kind is SubjectKind.GATEWAY or rollout.kind is RolloutKind.CONFIG:
                count += (a.site, a.gateway) in gateways
            else:
                count += (a.site, a.subject) in devices
        return count

    def _halt(
        self, session: Session, rollout: Rollout, reason: str, now: int, out: _Outbox
    ) -> None:
        rollout.state = RolloutState.HALTED
        rollout.halted_at = now
        rollout.halted_reason = reason[:300]
        rollout.updated_at = now
        targets = session.scalars(
            select(RolloutTarget).where(RolloutTarget.rollout_id == rollout.id)
        ).all()
        restored = 0
        for target in targets:
            if target.state in (TargetState.WAITING, TargetState.DEFERRED):
                target.state = TargetState.CANCELLED
                target.detail = "the rollout halted before it was sent"
            elif rollout.kind is RolloutKind.CONFIG and target.state in (
                TargetState.SENT,
                TargetState.SUCCEEDED,
                TargetState.FAILED,
            ):
                restored += self._roll_back(session, target, now, out)
        audit(
            session,
            now,
            "cloud",
            "rollout.halt",
            subject=f"rollout:{rollout.id}",
            detail={"reason": reason, "configs_restored": restored},
        )

    @staticmethod
    def _roll_back(session: Session, target: RolloutTarget, now: int, out: _Outbox) -> int:
        """Publish the target's previous config again, under a newer version."""
        current = desired_config(session, target.site, target.gateway)
        if current is None or current.version != target.config_version:
            target.detail = "its config changed since the rollout: not rolled back"
            return 0
        previous = (
            None if target.previous is None else AgentConfigData.model_validate(target.previous)
        )
        restored = AgentConfigData.model_validate(
            {**config_fields(previous), "version": current.version + 1}
        )
        put_desired_config(session, target.site, target.gateway, restored, now)
        was = "the site file's" if previous is None else f"v{previous.version}"
        target.state = TargetState.ROLLED_BACK
        target.detail = f"config v{restored.version} restores {was}"
        target.done_at = now
        audit(
            session,
            now,
            "cloud",
            "config.rollback",
            site=target.site,
            subject=target.gateway,
            detail={"version": restored.version, "restores": was},
        )
        out.configs.append((target.site, target.gateway))
        return 1

    @staticmethod
    def _device(session: Session, target: RolloutTarget) -> Device | None:
        return session.scalars(
            select(Device).where(Device.site == target.site, Device.device_id == target.device_id)
        ).first()

    def _tell(self, out: _Outbox) -> None:
        for transaction in out.commands:
            self._bus.publish(CommandReady(transaction))
        for site, gateway in dict.fromkeys(out.configs):
            self._bus.publish(ConfigReady(site, gateway))

    @staticmethod
    def _get(session: Session, rollout_id: int, *, lock: bool = False) -> Rollout:
        rollout = session.get(Rollout, rollout_id, with_for_update=lock)
        if rollout is None:
            raise NotFoundError(f"no rollout #{rollout_id}")
        return rollout

    # -------------------------------------------------------------------- views

    def rollouts(self, limit: int = 50) -> list[RolloutView]:
        """Newest first, with their rings."""
        with self._sessions() as session:
            ids = list(session.scalars(select(Rollout.id).order_by(Rollout.id.desc()).limit(limit)))
        return [self.rollout(i) for i in ids]

    def rollout(self, rollout_id: int) -> RolloutView:
        """A rollout with the status of each ring and target."""
        with self._sessions() as session:
            r = self._get(session, rollout_id)
            image = (
                None
                if r.firmware_image_id is None
                else session.get(FirmwareImageRow, r.firmware_image_id)
            )
            targets = session.scalars(
                select(RolloutTarget)
                .where(RolloutTarget.rollout_id == r.id)
                .order_by(RolloutTarget.ring, RolloutTarget.id)
            ).all()
            rings = []
            for i, sites in enumerate(r.rings):
                mine = [t for t in targets if t.ring == i]
                counts: dict[str, int] = {}
                for t in mine:
                    counts[t.state.value] = counts.get(t.state.value, 0) + 1
                rings.append(
                    RingView(i, tuple(sites), counts, tuple(_target_view(t) for t in mine))
                )
            affected: tuple[str, ...] = ()
            if r.state is RolloutState.HALTED and r.kind is RolloutKind.FIRMWARE:
                affected = tuple(
                    f"{t.site}/{t.device_id}"
                    for t in targets
                    if t.state in (TargetState.SENT, TargetState.SUCCEEDED, TargetState.FAILED)
                )
            return RolloutView(
                id=r.id,
                kind=r.kind.value,
                name=r.name,
                state=r.state.value,
                current_ring=r.current_ring,
                phase=r.phase.value,
                firmware_image_id=r.firmware_image_id,
                version=None if image is None else image.version,
                config=r.config,
                soak_s=r.soak_s,
                auto_advance=r.auto_advance,
                ring_started_at=r.ring_started_at,
                ring_done_at=r.ring_done_at,
                created_by=r.created_by,
                created_at=r.created_at,
                halted_at=r.halted_at,
                halted_reason=r.halted_reason,
                rings=tuple(rings),
                affected_devices=affected,
            )


def _done(target: RolloutTarget, state: TargetState, detail: str, now: int) -> bool:
    target.state = state
    target.detail = detail[:300]
    target.done_at = now
    return True


def _target_view(t: RolloutTarget) -> TargetView:
    return TargetView(
        site=t.site,
        gateway=t.gateway,
        device_id=t.device_id,
        state=t.state.value,
        transaction=t.transaction,
        config_version=t.config_version,
        previous=t.previous,
        detail=t.detail,
        attempts=t.attempts,
        sent_at=t.sent_at,
        done_at=t.done_at,
    )
