"""Commands to an agent with a reply and an expiry (DESIGN.md, ``req/{verb}`` and
``res/{verb}``): force sync, emergency unlock, revoke a PIN, restart, fetch logs, firmware
update.

A command is a row first (``pending``), published by the MQTT link after the commit
(QoS 1, marked ``sent`` once the broker acknowledged it), and answered by a reply paired by
``transaction``. A reply is stored once: a second delivery (the agent's outbox resending,
the broker redelivering) only counts in ``duplicate_replies``. A command nobody answered is
marked ``expired`` by the periodic pass once ``expires_at`` (plus a grace for a reply in
flight, and for a firmware update the transfer time) has passed; a reply that still comes
later is recorded, so an unlock that did happen never stays hidden.

Who may send what: ``unlock`` (it opens a public building's door from afar) and
``firmware-update`` (rollouts send it) are for city ops only; technicians send the rest;
facility managers and clinic staff send none. An unlock needs a reason, and every command
is in the fleet audit log with who asked and why.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.auth import AuthError
from cloud.core.bus import ChangeBus
from cloud.core.models import Role
from cloud.core.views import UserView
from cloud.errors import InvalidRequestError, NotFoundError
from cloud.fleet.audit import audit
from cloud.fleet.changes import CommandReady
from cloud.fleet.kinds import OPEN_COMMAND_STATES, CommandState, Subject, SubjectKind
from cloud.fleet.models import Command, Device, FirmwareImageRow, Gateway
from cloud.fleet.sites import command_view
from cloud.fleet.twins import report_firmware
from cloud.fleet.views import CommandView
from cloud.settings import CloudSettings
from protocol import topics
from protocol.clock import Clock
from protocol.errors import MessageError
from protocol.ids import uuid7
from protocol.messages import (
    CommandReplyData,
    CommandRequestData,
    CommandVerb,
    FirmwareUpdateResult,
    MessageType,
    command_args,
    make,
)

log = logging.getLogger(__name__)

DEFAULT_ROLES = frozenset({Role.OPS, Role.TECHNICIAN})
VERB_ROLES: dict[CommandVerb, frozenset[Role]] = {
    CommandVerb.UNLOCK: frozenset({Role.OPS}),
    CommandVerb.FIRMWARE_UPDATE: frozenset({Role.OPS}),
}
REPLY_GRACE_S = 10  # a reply sent just before expires_at is still on its way
MAX_TTL_S = 24 * 3600


def roles_for(verb: CommandVerb) -> frozenset[Role]:
    """The roles that may send ``verb``."""
    return VERB_ROLES.get(verb, DEFAULT_ROLES)


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """What a person asks for; ``data`` are the verb's arguments (see
    :data:`protocol.messages.COMMAND_ARGS`) but for an unlock's ``reason`` and
    ``requested_by`` (filled in here) and a firmware update's ``image`` (named by
    ``firmware_image_id``)."""

    site: str
    gateway: str
    verb: str
    data: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    ttl_s: int | None = None
    firmware_image_id: int | None = None


def image_b64(session: Session, image_id: int) -> str:
    """A stored image as base64, as a ``firmware-update`` carries it."""
    image = session.get(FirmwareImageRow, image_id)
    if image is None:
        raise NotFoundError(f"no firmware image #{image_id}; upload it first")
    return base64.b64encode(image.data).decode()


def new_command(
    session: Session,
    *,
    now: int,
    site: str,
    gateway: str,
    verb: CommandVerb,
    data: dict[str, Any],
    requested_by: str,
    expires_at: int,
    reason: str | None = None,
    firmware_image_id: int | None = None,
    rollout_id: int | None = None,
) -> Command:
    """Add a pending command (and its audit entry) in the caller's transaction; the
    caller tells the notifier after the commit."""
    device_id = data.get("lock_id") or data.get("display_id")
    command = Command(
        transaction=uuid7(now * 1000),
        verb=verb.value,
        site=site,
        gateway=gateway,
        device_id=device_id,
        data=data,
        firmware_image_id=firmware_image_id,
        requested_by=requested_by[:100],
        reason=reason,
        created_at=now,
        expires_at=expires_at,
        status=CommandState.PENDING,
        duplicate_replies=0,
        rollout_id=rollout_id,
    )
    session.add(command)
    audit(
        session,
        now,
        requested_by,
        f"command.{verb.value}",
        site=site,
        subject=device_id or gateway,
        detail={
            "transaction": command.transaction,
            "gateway": gateway,
            "data": data,
            "reason": reason,
            "rollout": rollout_id,
        },
    )
    return command


class CommandService:
    """Create commands, hand them to the MQTT side, record replies and expiries."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        settings: CloudSettings,
        bus: ChangeBus,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._settings = settings
        self._bus = bus

    def create(self, req: CommandRequest, user: UserView) -> CommandView:
        """Check, store and queue a command for publishing; 403 for a verb the user's role
        may not send, 400 for bad arguments, 404 for an unknown gateway or device."""
        try:
            verb = CommandVerb(req.verb)
        except ValueError:
            verbs = ", ".join(v.value for v in CommandVerb)
            raise InvalidRequestError(f"unknown verb {req.verb[:40]!r}; one of {verbs}") from None
        allowed = roles_for(verb)
        if user.role not in allowed:
            wanted = " or ".join(sorted(r.value for r in allowed))
            raise AuthError(f"{verb.value} needs the {wanted} role; you are {user.role.value}", 403)
        data = dict(req.data)
        reason = (req.reason or "").strip() or None
        if verb is CommandVerb.UNLOCK:
            if reason is None:
                raise InvalidRequestError("an emergency unlock needs a reason (it is audited)")
            data.update(reason=reason[:200], requested_by=user.username[:64])
        if reason is not None and len(reason) > 200:
            raise InvalidRequestError("a reason has at most 200 characters")
        ttl = req.ttl_s or (
            self._settings.fleet_firmware_ttl_s
            if verb is CommandVerb.FIRMWARE_UPDATE
            else self._settings.fleet_command_ttl_s
        )
        if not 1 <= ttl <= MAX_TTL_S:
            raise InvalidRequestError(f"ttl_s is 1 to {MAX_TTL_S} seconds")
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            if session.get(Gateway, (req.site, req.gateway)) is None:
                raise NotFoundError(f"no gateway {req.site}/{req.gateway} has reported yet")
            if verb is CommandVerb.FIRMWARE_UPDATE:
                if req.firmware_image_id is None:
                    raise InvalidRequestError("a firmware update names firmware_image_id")
                checked = {**data, "image": image_b64(session, req.firmware_image_id)}
            else:
                checked = data
            try:
                command_args(verb.value, checked)
            except MessageError as exc:
                raise InvalidRequestError(str(exc)) from None
            device_id = data.get("lock_id") or data.get("display_id")
            if device_id is not None and _device(session, req.site, req.gateway, device_id) is None:
                raise NotFoundError(f"no device {device_id!r} behind {req.site}/{req.gateway}")
            command = new_command(
                session,
                now=now,
                site=req.site,
                gateway=req.gateway,
                verb=verb,
                data=data,
                requested_by=user.username,
                reason=reason,
                expires_at=now + ttl,
                firmware_image_id=req.firmware_image_id,
            )
            session.flush()
            view = command_view(command)
        self._bus.publish(CommandReady(view.transaction))
        return view

    def command(self, transaction: str, scope: Collection[str] | None) -> CommandView:
        """One command with its reply (404 outside ``scope``)."""
        with self._sessions() as session:
            row = session.scalars(select(Command).where(Command.transaction == transaction)).first()
            if row is None or (scope is not None and row.site not in scope):
                raise NotFoundError(f"no command {transaction[:64]!r}")
            return command_view(row)

    def commands(
        self,
        scope: Collection[str] | None,
        *,
        site: str | None = None,
        gateway: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[CommandView]:
        """Newest first."""
        query = select(Command).order_by(Command.id.desc()).limit(limit)
        if scope is not None:
            query = query.where(Command.site.in_(list(scope)))
        if site is not None:
            query = query.where(Command.site == site)
        if gateway is not None:
            query = query.where(Command.gateway == gateway)
        if status is not None:
            try:
                query = query.where(Command.status == CommandState(status))
            except ValueError:
                states = ", ".join(s.value for s in CommandState)
                raise InvalidRequestError(f"status is one of {states}") from None
        with self._sessions() as session:
            return [command_view(c) for c in session.scalars(query)]

    # ------------------------------------------------------------- MQTT side

    def pending(self) -> list[str]:
        """Transactions still to publish (not expired), oldest first."""
        now = int(self._clock.now())
        with self._sessions() as session:
            return list(
                session.scalars(
                    select(Command.transaction)
                    .where(Command.status == CommandState.PENDING, Command.expires_at >= now)
                    .order_by(Command.id)
                )
            )

    def message(self, transaction: str) -> tuple[str, bytes] | None:
        """``(topic, payload)`` of a command still to publish, or None (sent, answered or
        expired meanwhile)."""
        now = self._clock.now()
        with self._sessions() as session:
            row = session.scalars(select(Command).where(Command.transaction == transaction)).first()
            if row is None or row.status is not CommandState.PENDING or row.expires_at < now:
                return None
            data = dict(row.data)
            if row.firmware_image_id is not None:
                data["image"] = image_b64(session, row.firmware_image_id)
            request = CommandRequestData(
                transaction=row.transaction, expires_at=row.expires_at, data=data
            )
            topic = topics.request(row.site, row.gateway, row.verb)
        return topic, make(MessageType.COMMAND, request, ts=now)

    def mark_sent(self, transaction: str) -> None:
        """The broker acknowledged the publish."""
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            row = session.scalars(select(Command).where(Command.transaction == transaction)).first()
            if row is not None and row.status is CommandState.PENDING:
                row.status = CommandState.SENT
                row.sent_at = now

    def record_reply(self, site: str, gateway: str, verb: str, reply: CommandReplyData) -> bool:
        """Store a reply; False (and nothing changed but the duplicate count) when this
        command was answered before, or when the reply does not match a command of this
        gateway and verb."""
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            row = session.scalars(
                select(Command).where(Command.transaction == reply.transaction).with_for_update()
            ).first()
            if row is None or (row.site, row.gateway, row.verb) != (site, gateway, verb):
                log.warning(
                    "a %s reply from %s/%s names no command of it (transaction %s)",
                    verb,
                    site,
                    gateway,
                    reply.transaction,
                )
                return False
            if row.replied_at is not None:
                row.duplicate_replies += 1
                return False
            row.status = CommandState(reply.status.value)
            row.replied_at = now
            row.reply_data = reply.data
            row.reply_error = reply.error
            if row.verb == CommandVerb.FIRMWARE_UPDATE.value and row.status is CommandState.OK:
                self._firmware_reported(session, row, reply)
            audit(
                session,
                now,
                f"gateway:{site}/{gateway}",
                "command.reply",
                site=site,
                subject=row.device_id or gateway,
                detail={
                    "transaction": row.transaction,
                    "verb": verb,
                    "status": reply.status.value,
                    "error": reply.error,
                    "late": row.expires_at + REPLY_GRACE_S < now,
                },
            )
            return True

    def expire_due(self, now: float) -> int:
        """Mark unanswered commands past their time ``expired``; how many."""
        at = int(now)
        count = 0
        with self._sessions.begin() as session:
            rows = session.scalars(
                select(Command).where(
                    Command.status.in_(OPEN_COMMAND_STATES), Command.expires_at < at
                )
            ).all()
            for row in rows:
                wait = REPLY_GRACE_S
                if row.verb == CommandVerb.FIRMWARE_UPDATE.value:
                    wait += self._settings.fleet_firmware_ttl_s  # the transfer itself
                if at <= row.expires_at + wait:
                    continue
                row.status = CommandState.EXPIRED
                count += 1
                audit(
                    session,
                    at,
                    "cloud",
                    "command.expired",
                    site=row.site,
                    subject=row.device_id or row.gateway,
                    detail={"transaction": row.transaction, "verb": row.verb},
                )
        return count

    @staticmethod
    def _firmware_reported(session: Session, row: Command, reply: CommandReplyData) -> None:
        try:
            result = FirmwareUpdateResult.model_validate(reply.data)
        except ValueError:
            log.warning("firmware-update reply %s carries no valid result", row.transaction)
            return
        dev = _device(session, row.site, row.gateway, result.device_id)
        if dev is None:
            return
        dev.firmware = result.version
        report_firmware(
            session,
            Subject(dev.site, dev.gateway, SubjectKind(dev.kind.value), dev.device_id),
            result.version,
            row.replied_at or 0,
        )


def _device(session: Session, site: str, gateway: str, device_id: str) -> Device | None:
    return session.scalars(
        select(Device).where(
            Device.site == site, Device.gateway == gateway, Device.device_id == device_id
        )
    ).first()
