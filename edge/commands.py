"""Fleet commands: requests from the cloud on ``req/{verb}``, replies on ``res/{verb}``.

The MQTT link hands every command over as it arrives (:meth:`CommandService.received`);
each is carried out in its own task, under the command's transaction as trace id, so a
slow firmware update never holds up the link or another command.

For each command, in order:

1. A payload that is not a command is answered ``rejected`` (when it names a transaction
   to answer to; otherwise it is logged and dropped).
2. A transaction already answered gets the stored reply again and is not carried out
   again (replies are kept in the store for the command's lifetime plus a day); one still
   running is answered once it is done, with the same reply.
3. A command received after its ``expires_at`` is answered ``expired``.
4. An unknown verb or malformed arguments are answered ``rejected`` with the reason.
5. Otherwise the verb runs and its reply goes out through the durable outbox.

``restart`` replies first, waits (a few seconds at most) for the broker to acknowledge the
reply, then stops the agent with :data:`EXIT_RESTART`, which systemd restarts.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from pydantic import BaseModel

from edge.agent_config import ConfigTwin
from edge.config import SiteConfig
from edge.devices.display_coordinator import DisplayCoordinator
from edge.devices.lock_coordinator import LockCoordinator
from edge.errors import LockRejected, OutboxError, StoreError
from edge.log_ring import LogRing
from edge.outbox import Outbox
from edge.store import Store
from protocol import messages, topics
from protocol.clock import Clock
from protocol.errors import DenenError, MessageError
from protocol.firmware_image import DeviceKind, FirmwareImage, ImageError
from protocol.firmware_updater import UpdateRefusedError
from protocol.ids import uuid7
from protocol.lock_wire import NackCode
from protocol.messages import (
    CommandReplyData,
    CommandRequestData,
    CommandStatus,
    CommandVerb,
    FirmwareUpdateArgs,
    FirmwareUpdateResult,
    ForceSyncArgs,
    ForceSyncResult,
    LockHolding,
    LogsArgs,
    LogsResult,
    MessageType,
    RestartResult,
    RevokePinArgs,
    RevokePinResult,
    UnlockArgs,
    UnlockResult,
)
from protocol.tracing import traced, valid_trace_id

log = logging.getLogger(__name__)

EXIT_RESTART = 75  # EX_TEMPFAIL: "try again"; deploy/systemd/denen-agent.service restarts it
REMEMBER_S = 24 * 3600  # replies are kept this long past the command's expiry
UNKNOWN_GRANT_KEEP_S = 7 * 24 * 3600  # a revoked grant the agent never saw stays off this long
REPLY_DELIVERY_WAIT_S = 5.0  # restart: how long to wait for the reply's PUBACK
ERROR_MAX = 500
UNKNOWN_VERB = "unknown"  # the metrics label of every verb this agent does not know

AfterReply = Callable[[str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a command came to; ``after`` runs once the reply is in the outbox (it gets
    the reply's outbox key)."""

    status: CommandStatus
    data: BaseModel | None = None
    error: str | None = None
    after: AfterReply | None = None


def _rejected(reason: str) -> Outcome:
    return Outcome(CommandStatus.REJECTED, error=reason)


def _failed(reason: str, data: BaseModel | None = None) -> Outcome:
    return Outcome(CommandStatus.ERROR, data=data, error=reason)


def _transaction_in(payload: bytes) -> str | None:
    # a malformed command is still answered when it names a usable transaction
    try:
        value = json.loads(payload)["data"]["transaction"]
    except (ValueError, TypeError, KeyError):
        return None
    return valid_trace_id(value) if isinstance(value, str) else None


def _parse_command(payload: bytes) -> CommandRequestData:
    _, data = messages.parse(payload)
    if not isinstance(data, CommandRequestData):
        raise MessageError(f"a {type(data).__name__} message is not a command")
    return data


class CommandService:
    """Carries out fleet commands; ``run()`` owns their tasks (see the module docstring)."""

    def __init__(
        self,
        config: SiteConfig,
        *,
        store: Store,
        outbox: Outbox,
        clock: Clock,
        locks: Mapping[str, LockCoordinator],
        displays: Mapping[str, DisplayCoordinator],
        twin: ConfigTwin,
        logs: LogRing,
        restart: Callable[[int], None],
    ) -> None:
        self.config = config
        self.store = store
        self.outbox = outbox
        self.clock = clock
        self.locks = locks
        self.displays = displays
        self.twin = twin
        self.logs = logs
        self.restart = restart
        # (verb, status) -> commands handled, for /metrics
        self.handled: collections.Counter[tuple[str, str]] = collections.Counter()
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._inflight: dict[str, asyncio.Future[bytes]] = {}

    # ------------------------------------------------------------ public

    def received(self, verb: str, payload: bytes | bytearray) -> None:
        """A message on ``req/{verb}`` (from the MQTT link; never blocks it)."""
        self._queue.put_nowait((verb, bytes(payload)))

    async def run(self) -> None:
        """Carry out commands as they arrive, each in its own task, until cancelled."""
        async with asyncio.TaskGroup() as tg:
            while True:
                verb, payload = await self._queue.get()
                tg.create_task(self._handle(verb, payload), name=f"command-{verb}")

    # ------------------------------------------------------------ one command

    async def _handle(self, verb: str, payload: bytes) -> None:
        with traced(None):
            try:
                await self._take(verb, payload)
            except Exception:  # the one place a bug in a verb must not stop the agent
                log.exception("command on req/%s failed unexpectedly", verb)

    async def _take(self, verb: str, payload: bytes) -> None:
        try:
            data = _parse_command(payload)
        except MessageError as exc:
            transaction = _transaction_in(payload)
            if transaction is None:
                log.warning("dropped a malformed command on req/%s: %s", verb, exc)
                return
            with traced(transaction):
                log.warning("command %s %s rejected: %s", verb, transaction, exc)
                # not remembered: with no valid request there is nothing to carry out once
                self._send(verb, transaction, self._reply(transaction, _rejected(str(exc))))
                self._count(verb, CommandStatus.REJECTED)
            return
        with traced(data.transaction):
            await self._serve(verb, data)

    async def _serve(self, verb: str, request: CommandRequestData) -> None:
        transaction = request.transaction
        try:
            stored = self.store.command_reply(transaction)
        except StoreError as exc:
            log.error("command %s %s: %s", verb, transaction, exc)  # noqa: TRY400 - expected failure, no traceback
            stored = None
        running = self._inflight.get(transaction)
        if stored is None and running is not None:
            stored = await asyncio.shield(running)
        if stored is not None:
            log.info(
                "command %s %s delivered again: same reply, not carried out", verb, transaction
            )
            self._send(verb, transaction, stored)
            return
        done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._inflight[transaction] = done
        try:
            outcome = await self._outcome(verb, request)
            reply = self._reply(transaction, outcome)
            keep_until = max(request.expires_at, self.clock.now())
            self._remember(transaction, verb, reply, keep_until=keep_until)
            done.set_result(reply)
        finally:
            self._inflight.pop(transaction, None)
            if not done.done():
                done.cancel()
        key = self._send(verb, transaction, reply)
        self._count(verb, outcome.status)
        level = logging.INFO if outcome.status is CommandStatus.OK else logging.WARNING
        log.log(
            level,
            "command %s %s: %s%s",
            verb,
            transaction,
            outcome.status.value,
            f" ({outcome.error})" if outcome.error else "",
        )
        if outcome.after is not None and key is not None:
            await outcome.after(key)

    async def _outcome(self, verb: str, request: CommandRequestData) -> Outcome:
        now = self.clock.now()
        if now > request.expires_at:
            return Outcome(
                CommandStatus.EXPIRED,
                error=f"received {now - request.expires_at:.0f} s after it expired",
            )
        try:
            known, args = messages.command_args(verb, request.data)
        except MessageError as exc:
            return _rejected(str(exc))
        log.info("command %s %s: carrying it out", verb, request.transaction)
        try:
            return await self._execute(known, args)
        except DenenError as exc:  # a lock away, a disk full: said in the reply
            return _failed(str(exc))

    async def _execute(self, verb: CommandVerb, args: BaseModel) -> Outcome:
        if isinstance(args, ForceSyncArgs):
            return await self._force_sync(args)
        if isinstance(args, UnlockArgs):
            return await self._unlock(args)
        if isinstance(args, RevokePinArgs):
            return await self._revoke_pin(args)
        if isinstance(args, LogsArgs):
            return Outcome(CommandStatus.OK, LogsResult(lines=self.logs.tail(args.lines)))
        if isinstance(args, FirmwareUpdateArgs):
            return await self._firmware_update(args)
        if verb is CommandVerb.RESTART:
            return Outcome(
                CommandStatus.OK, RestartResult(exit_status=EXIT_RESTART), after=self._restart
            )
        return _rejected(f"{verb.value} is not carried out by this agent")

    # ------------------------------------------------------------ replies

    def _reply(self, transaction: str, outcome: Outcome) -> bytes:
        data = CommandReplyData(
            transaction=transaction,
            status=outcome.status,
            data={} if outcome.data is None else outcome.data.model_dump(mode="json"),
            error=None if outcome.error is None else outcome.error[:ERROR_MAX],
        )
        return messages.make(MessageType.COMMAND_REPLY, data, ts=self.clock.now())

    def _remember(self, transaction: str, verb: str, reply: bytes, *, keep_until: float) -> None:
        try:
            self.store.record_command(
                transaction, verb, reply, keep_until=keep_until + REMEMBER_S, at=self.clock.now()
            )
        except StoreError as exc:
            # the reply still goes out; a duplicate would be carried out again
            log.error("command %s %s: reply not remembered: %s", verb, transaction, exc)  # noqa: TRY400 - expected failure, no traceback

    def _send(self, verb: str, transaction: str, reply: bytes) -> str | None:
        """Queue the reply in the outbox; its outbox key, ``None`` when it could not be."""
        key = f"res:{transaction}:{uuid7()}"  # each copy is a message of its own
        topic = topics.response(self.config.site, self.config.gateway, verb)
        try:
            self.outbox.add(topic, reply, key, now=self.clock.now())
        except OutboxError as exc:
            log.error("command %s %s: reply not queued: %s", verb, transaction, exc)  # noqa: TRY400 - expected failure, no traceback
            return None
        return key

    def _count(self, verb: str, status: CommandStatus) -> None:
        label = verb if verb in set(CommandVerb) else UNKNOWN_VERB
        self.handled[(label, status.value)] += 1

    # ------------------------------------------------------------ verbs

    def _lock(self, lock_id: str) -> LockCoordinator | None:
        return self.locks.get(lock_id)

    async def _force_sync(self, args: ForceSyncArgs) -> Outcome:
        if args.lock_id is not None and args.lock_id not in self.locks:
            return _rejected(f"no lock {args.lock_id} at this gateway")
        chosen = [self.locks[args.lock_id]] if args.lock_id else list(self.locks.values())
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(self._sync_one(c)) for c in chosen]
        result = ForceSyncResult(locks=[t.result() for t in tasks])
        failed = [h.lock_id for h in result.locks if not h.synced]
        if failed:
            return _failed(f"not synced: {', '.join(failed)}", result)
        return Outcome(CommandStatus.OK, result)

    async def _sync_one(self, coordinator: LockCoordinator) -> LockHolding:
        try:
            result = await coordinator.sync_now()
        except DenenError as exc:
            return LockHolding(lock_id=coordinator.lock_id, synced=False, error=str(exc)[:300])
        return LockHolding(
            lock_id=coordinator.lock_id,
            synced=True,
            version=result.version,
            grant_ids=[] if result.plan is None else result.plan.grant_ids,
            clock_offset_s=coordinator.clock_offset_s,
        )

    async def _unlock(self, args: UnlockArgs) -> Outcome:
        coordinator = self._lock(args.lock_id)
        if coordinator is None:
            return _rejected(f"no lock {args.lock_id} at this gateway")
        # the audit line comes first: an attempt is worth recording even when it fails
        log.warning(
            "emergency remote unlock of lock %s asked by %s: %s",
            args.lock_id,
            args.requested_by,
            args.reason,
        )
        try:
            seq, boot = await coordinator.remote_unlock()
        except LockRejected as exc:
            if exc.code == NackCode.BAD_REQUEST:
                firmware = coordinator.info.firmware if coordinator.info else "unknown"
                return _failed(
                    f"lock {args.lock_id} (firmware {firmware}) has no remote unlock: {exc.detail}"
                )
            raise
        log.warning("lock %s unlocked remotely (lock event %d)", args.lock_id, seq)
        return Outcome(
            CommandStatus.OK,
            UnlockResult(
                lock_id=args.lock_id,
                event_seq=seq,
                event_boot=boot,
                unlocked_at=int(self.clock.now()),
            ),
        )

    async def _revoke_pin(self, args: RevokePinArgs) -> Outcome:
        coordinator = self._lock(args.lock_id)
        if coordinator is None:
            return _rejected(f"no lock {args.lock_id} at this gateway")
        now = self.clock.now()
        held = self.store.held_slots(args.lock_id)
        ends = [h.end for h in held if h.grant_id == args.grant_id]
        snapshot = self.store.snapshot()
        for lock in [] if snapshot is None else snapshot.locks:
            if lock.lock_id == args.lock_id:
                ends += [g.end for g in lock.grants if g.grant_id == args.grant_id]
        until = max(ends) if ends else now + UNKNOWN_GRANT_KEEP_S
        self.store.revoke_grant(args.lock_id, args.grant_id, until=until, at=now)
        was_on_lock = bool([h for h in held if h.grant_id == args.grant_id])
        log.warning("grant %s revoked on lock %s by command", args.grant_id, args.lock_id)
        try:
            result = await coordinator.sync_now()
        except DenenError as exc:
            still = [h.grant_id for h in held if h.grant_id is not None]
            data = RevokePinResult(
                lock_id=args.lock_id,
                grant_id=args.grant_id,
                was_on_lock=was_on_lock,
                grant_ids=still,
            )
            return _failed(f"revocation kept; it reaches the lock when it is back: {exc}", data)
        grant_ids = [] if result.plan is None else result.plan.grant_ids
        data = RevokePinResult(
            lock_id=args.lock_id,
            grant_id=args.grant_id,
            was_on_lock=was_on_lock,
            grant_ids=grant_ids,
        )
        return Outcome(CommandStatus.OK, data)

    async def _firmware_update(self, args: FirmwareUpdateArgs) -> Outcome:
        try:
            image = FirmwareImage.from_bytes(args.image_bytes())
        except (ImageError, ValueError) as exc:
            return _rejected(f"not a firmware image: {exc}")
        if args.lock_id is not None:
            return await self._update_lock(args.lock_id, image)
        if args.display_id is not None:
            return await self._update_display(args.display_id, image)
        return _rejected("name a lock_id or a display_id")

    async def _update_lock(self, lock_id: str, image: FirmwareImage) -> Outcome:
        coordinator = self._lock(lock_id)
        if coordinator is None:
            return _rejected(f"no lock {lock_id} at this gateway")
        if image.header.kind is not DeviceKind.LOCK:
            return _rejected(f"a {image.header.kind.name.lower()} image cannot go to a lock")
        now = self.clock.now()
        stored = self.store.lock_access(lock_id)
        open_windows = (
            [] if stored is None else [g for g in stored[1].grants if g.start <= now < g.end]
        )
        if open_windows:
            until = max(g.end for g in open_windows)
            return _rejected(
                f"a booking window is open on lock {lock_id} until {until}: "
                "lock updates wait until no booking is running"
            )
        previous = coordinator.info.firmware if coordinator.info else ""
        try:
            result = await coordinator.update_firmware(image)
        except UpdateRefusedError as exc:
            return _failed(f"lock {lock_id} refused the image ({exc}); it runs {previous}")
        return Outcome(
            CommandStatus.OK,
            FirmwareUpdateResult(
                device_id=lock_id,
                kind="lock",
                previous=result.previous[:64],
                version=result.version,
                installed=result.installed,
            ),
        )

    async def _update_display(self, display_id: str, image: FirmwareImage) -> Outcome:
        coordinator = self.displays.get(display_id)
        if coordinator is None:
            return _rejected(f"no display {display_id} at this gateway")
        if image.header.kind is not DeviceKind.DISPLAY:
            return _rejected(f"a {image.header.kind.name.lower()} image cannot go to a display")
        hours = self.twin.current.clinic_hours
        if hours is not None and hours.is_open(self.clock.now()):
            return _rejected(
                "the clinic is open (config clinic_hours): display updates wait until it closes"
            )
        previous = coordinator.firmware or ""
        try:
            result = await coordinator.update_firmware(image)
        except UpdateRefusedError as exc:
            return _failed(f"display {display_id} refused the image ({exc}); it runs {previous}")
        return Outcome(
            CommandStatus.OK,
            FirmwareUpdateResult(
                device_id=display_id,
                kind="display",
                previous=result.previous[:64],
                version=result.version,
                installed=result.installed,
            ),
        )

    async def _restart(self, reply_key: str) -> None:
        """After the reply is queued: wait for its PUBACK (a few seconds at most), then stop
        the agent with the restart status."""
        try:
            async with asyncio.timeout(REPLY_DELIVERY_WAIT_S):
                while self.outbox.waiting(reply_key):  # noqa: ASYNC110 - outbox rows have no event
                    await asyncio.sleep(0.05)
        except TimeoutError:
            log.warning("restart: the reply is not acknowledged yet; it goes after the restart")
        except OutboxError as exc:
            log.error("restart: %s", exc)  # noqa: TRY400 - expected failure, no traceback
        log.warning("restarting the agent as the cloud asked (exit status %d)", EXIT_RESTART)
        self.restart(EXIT_RESTART)
