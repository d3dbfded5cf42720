"""Health: what the agents report (birth and last will, telemetry, lock events) becomes
gateway and device rows, bounded history samples, twin reports and alerts; a periodic
pass judges what only time reveals (a silent gateway, a missed lock sync).

The rules themselves (thresholds, the forecast) are in :mod:`cloud.fleet.rules`.

Alerts and the condition behind them change in one transaction. A gateway counts as
offline from its last will (or its own "offline" on a clean stop) at once, and from
silence once its telemetry is more than ``fleet_heartbeat_misses`` intervals late; the
periodic pass judges silence only after the cloud itself has listened that long, so a
cloud restart does not mark every gateway offline. What someone does at a lock (PINs
guessed at the keypad, frames the lock refused) opens an alert that the periodic pass
resolves once an hour has passed without it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, func, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from cloud.core.models import Site
from cloud.fleet import rules
from cloud.fleet.alerts import (
    is_open,
    open_alert,
    open_alert_of,
    open_key,
    open_keys_of_kinds,
    prime_open_keys,
    resolve_alert,
    seen_again,
)
from cloud.fleet.kinds import AlertKind, DeviceKind, Subject, SubjectKind, gateway_subject
from cloud.fleet.models import Alert, Device, Gateway, HealthSample
from cloud.fleet.ownership import Claim, RefusedClaims, owner, refuse
from cloud.fleet.ports import NO_ANSWERS, FleetPorts
from cloud.fleet.site_rows import ensure_site
from cloud.fleet.sites import ensure_device, ensure_devices
from cloud.fleet.twins import (
    desired_configs,
    heartbeat_interval,
    prime_twins,
    report_agent,
    report_firmware,
    sync_interval,
    twin_config,
)
from cloud.localtime import format_local
from cloud.settings import CloudSettings
from protocol.clock import Clock
from protocol.messages import (
    CardReaderTelemetry,
    DisplayTelemetry,
    GatewayState,
    LockEventData,
    LockEventKind,
    LockTelemetry,
    StatusData,
    TelemetryData,
)

log = logging.getLogger(__name__)

# what a gateway said of devices not its own (cloud.fleet.ownership), as counted and alerted
DEVICE_HEALTH_WHAT = "device health"
LOCK_HEALTH_WHAT = "lock health"
STATUS_WHAT = "gateway statuses"

# lock events that open or close an alert (the rest only go to the audit log)
_OPENS = {
    LockEventKind.LOCKOUT_STARTED: (
        AlertKind.LOCKOUT,
        "keypad locked out after repeated wrong PINs (someone may be guessing)",
    ),
    LockEventKind.DOOR_HELD_OPEN: (AlertKind.DOOR_HELD_OPEN, "door held open too long"),
    LockEventKind.JAM: (AlertKind.JAM, "the bolt jammed: the door may not be locked"),
}
_CLOSES: dict[LockEventKind, tuple[tuple[AlertKind, str], ...]] = {
    LockEventKind.DOOR_CLOSED: ((AlertKind.DOOR_HELD_OPEN, "the door closed"),),
    LockEventKind.UNLOCKED: (
        (AlertKind.LOCKOUT, "a valid PIN opened the door"),
        (AlertKind.JAM, "the bolt moved again"),
    ),
    LockEventKind.RELOCKED: ((AlertKind.JAM, "the bolt moved again"),),
    LockEventKind.REMOTE_UNLOCKED: ((AlertKind.JAM, "the bolt moved again"),),
}
RELEVANT_EVENTS = (
    frozenset(_OPENS) | frozenset(_CLOSES) | {LockEventKind.BATTERY, LockEventKind.FRAMES_REFUSED}
)
_CLOSABLE = frozenset(kind for closes in _CLOSES.values() for kind, _ in closes)
_QUIETED = {
    AlertKind.KEYPAD_GUESSING: "no wrong PINs at that rate for an hour",
    AlertKind.TAMPER: "no refused frames for an hour",
}


def _opening(event: LockEventData) -> tuple[AlertKind, str] | None:
    """The alert ``event`` opens (or shows again), with its message, if any."""
    if event.kind is LockEventKind.FRAMES_REFUSED:
        return (
            AlertKind.TAMPER,
            f"the lock refused {event.value or 'some'} command frame(s) since its last "
            "report: forged, replayed or under another key. Someone may be attacking its "
            "radio or serial link, or it was paired again without its gateway",
        )
    if event.kind is LockEventKind.DENIED_WRONG_PIN:
        if not rules.keypad_guessing(event.value):
            return None
        return (
            AlertKind.KEYPAD_GUESSING,
            f"{event.value} wrong PINs in an hour at the keypad (an alert from "
            f"{rules.KEYPAD_GUESSING_PER_HOUR}): someone may be guessing PINs",
        )
    return _OPENS.get(event.kind)


@dataclass(frozen=True, slots=True)
class HealthRun:
    """What one periodic pass found."""

    gateways_offline: int
    syncs_missed: int


def device_subject(d: Device) -> Subject:
    return Subject(d.site, d.gateway, SubjectKind(d.kind.value), d.device_id)


class HealthService:
    """Turns reports into health and alerts; ``check`` is the periodic part."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        settings: CloudSettings,
        ports: FleetPorts = NO_ANSWERS,
        refused: RefusedClaims | None = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._settings = settings
        self._ports = ports
        self.refused = refused or RefusedClaims()  # device reports of another gateway's

    # ------------------------------------------------------------------- ingest

    def record_status(self, site: str, gateway: str, status: StatusData) -> None:
        """Birth (online) resolves "gateway offline"; a last will opens it at once."""
        self.record_status_many([(site, gateway, status)])

    def record_status_many(self, statuses: Sequence[tuple[str, str, StatusData]]) -> None:
        """Many births and wills in one transaction, in order (after a broker restart every
        gateway's retained status arrives at once, then its new birth). The sites,
        gateways, locks and open alerts they touch are loaded up front."""
        if not statuses:
            return
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            sites = list(dict.fromkeys(site for site, _gw, _s in statuses))
            known = set(session.scalars(select(Site.slug).where(Site.slug.in_(sites))))
            for site in sites:
                if site not in known:
                    ensure_site(session, site, now, ports=self._ports)
            gateways = _gateways(session, sites)
            new = [k for k in dict.fromkeys((s, g) for s, g, _st in statuses) if k not in gateways]
            if new:
                _ensure_gateways(session, new, now)
                gateways.update(_gateways(session, list(dict.fromkeys(s for s, _g in new))))
            query = select(Device).where(Device.site.in_(sites))
            devices = {(d.site, d.device_id): d for d in session.scalars(query)}
            online = [(s, g, st) for s, g, st in statuses if st.state is GatewayState.ONLINE]
            registered = self._ports.registered(
                session, {(site, lock) for site, _g, status in online for lock in status.locks}
            )
            first: dict[tuple[str, str], str] = {}
            for site, gateway, status in online:
                for lock_id in status.locks:
                    key = (site, lock_id)
                    if key not in devices and owner(gateway, registered.get(key), None) == gateway:
                        first.setdefault(key, gateway)
            if first:
                ensure_devices(
                    session, [(s, g, d, DeviceKind.LOCK) for (s, d), g in first.items()], now
                )
                devices.update({(d.site, d.device_id): d for d in session.scalars(query)})
            refused = {
                (site, gateway, lock_id)
                for site, gateway, status in online
                for lock_id in status.locks
                if owner(
                    gateway,
                    registered.get((site, lock_id)),
                    devices[(site, lock_id)].gateway if (site, lock_id) in devices else None,
                )
                != gateway
            }
            refuse(
                session,
                self._settings,
                now,
                sorted(refused),
                what=STATUS_WHAT,
                counter=self.refused,
                dropped=len({(site, gateway) for site, gateway, _lock in refused}),
            )
            prime_open_keys(session, sites)
            for site, gateway, status in statuses:
                self._status(
                    session, gateways[(site, gateway)], devices, status, now, refused=refused
                )

    def _status(
        self,
        session: Session,
        gw: Gateway,
        devices: dict[tuple[str, str], Device],
        status: StatusData,
        now: int,
        *,
        refused: set[Claim],
    ) -> None:
        gw.state = status.state.value
        gw.agent_version = status.agent_version
        gw.last_seen = now
        subject = gateway_subject(gw.site, gw.gateway)
        if status.state is GatewayState.ONLINE:
            _set_available(gw, True, now)
            resolve_alert(
                session, now, AlertKind.GATEWAY_OFFLINE, subject, "the agent came back online"
            )
            for lock_id in status.locks:
                if (gw.site, gw.gateway, lock_id) in refused:
                    continue  # another gateway's lock: not moved by this one's word
                dev = devices.get((gw.site, lock_id))
                if dev is None:  # created by someone else meanwhile and not seen: ask
                    dev = ensure_device(
                        session, gw.site, gw.gateway, lock_id, kind=DeviceKind.LOCK, now=now
                    )
                    devices[(gw.site, lock_id)] = dev
                dev.gateway = gw.gateway
        else:
            _set_available(gw, False, now)
            open_alert(
                session,
                self._settings,
                now,
                AlertKind.GATEWAY_OFFLINE,
                subject,
                message="the agent went offline (its last will: the connection dropped, "
                "or it stopped)",
            )

    def record_telemetry(self, site: str, gateway: str, telemetry: TelemetryData) -> None:
        """The heartbeat: the gateway's health and every device's, samples, alerts."""
        self.record_telemetry_many([(site, gateway, telemetry)])

    def record_telemetry_many(self, reports: Sequence[tuple[str, str, TelemetryData]]) -> None:
        """Many gateways' heartbeats in one transaction, each as :meth:`record_telemetry`
        would take it, in order (a gateway that reported twice ends as its later report
        says). The rows they touch are loaded up front in a few queries, not per device."""
        if not reports:
            return
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            batch = self._load(session, reports, now)
            refuse(
                session,
                self._settings,
                now,
                sorted(batch.refused),
                what=DEVICE_HEALTH_WHAT,
                counter=self.refused,
                dropped=len(batch.refused),
            )
            for site, gateway, telemetry in reports:
                self._telemetry(batch, site, gateway, telemetry)

    def _telemetry(self, batch: _Batch, site: str, gateway: str, telemetry: TelemetryData) -> None:
        session, now = batch.session, batch.now
        gw = batch.gateways[(site, gateway)]
        gw.last_seen = now
        grew = gw.outbox_depth is not None and telemetry.outbox_depth > gw.outbox_depth
        gw.outbox_growth = gw.outbox_growth + 1 if grew else 0
        gw.telemetry_at = now
        gw.uptime_s = telemetry.uptime_s
        gw.outbox_depth = telemetry.outbox_depth
        gw.outbox_oldest_age_s = telemetry.outbox_oldest_age_s
        gw.frames_dropped = telemetry.frames_dropped
        gw.time_trusted = telemetry.time_trusted
        subject = gateway_subject(site, gateway)
        if gw.state == GatewayState.ONLINE.value:
            _set_available(gw, True, now)
            resolve_alert(
                session, now, AlertKind.GATEWAY_OFFLINE, subject, "telemetry arrives again"
            )
        backlog = rules.outbox_backlog(
            telemetry.outbox_depth, gw.outbox_growth, telemetry.outbox_oldest_age_s
        )
        if backlog:
            age = telemetry.outbox_oldest_age_s
            open_alert(
                session,
                self._settings,
                now,
                AlertKind.OUTBOX_BACKLOG,
                subject,
                message=f"{telemetry.outbox_depth} messages wait in the agent's outbox"
                + ("" if age is None else f", the oldest for {age:.0f} s"),
            )
        elif backlog is False:
            resolve_alert(session, now, AlertKind.OUTBOX_BACKLOG, subject, "the outbox drained")
        if gw.sampled_at is None or now - gw.sampled_at >= self._settings.fleet_sample_every_s:
            gw.sampled_at = now
            session.add(
                HealthSample(
                    site=site,
                    subject_kind=SubjectKind.GATEWAY,
                    subject=gateway,
                    at=now,
                    outbox_depth=telemetry.outbox_depth,
                )
            )
        twin = report_agent(session, site, gateway, telemetry, now)
        interval = sync_interval(twin_config(twin), self._settings)
        for lock in telemetry.locks:
            if (site, gateway, lock.lock_id) not in batch.refused:
                self._lock(batch, site, gateway, lock, interval)
        for display in telemetry.displays:
            if (site, gateway, display.display_id) not in batch.refused:
                self._display(batch, site, gateway, display)
        for reader in telemetry.card_readers:
            if (site, gateway, reader.reader_id) not in batch.refused:
                self._reader(batch, site, gateway, reader)

    def _load(
        self, session: Session, reports: Sequence[tuple[str, str, TelemetryData]], now: int
    ) -> _Batch:
        """The sites, gateways and devices of ``reports`` (created when first seen), their
        twins and open alerts, and the battery history of every lock that may take a
        sample: a query each (the domains' registries: one each), whatever the number of
        reports. A device reported by a
        gateway it does not belong to (:func:`~cloud.fleet.ownership.owner`: as registered
        by its domain, else as first heard) is neither created nor moved: its report is
        refused."""
        sites = list(dict.fromkeys(site for site, _gw, _t in reports))
        known = set(session.scalars(select(Site.slug).where(Site.slug.in_(sites))))
        for site in sites:
            if site not in known:
                ensure_site(session, site, now, ports=self._ports)
        gateways = _gateways(session, sites)
        new = [k for k in dict.fromkeys((s, g) for s, g, _t in reports) if k not in gateways]
        if new:
            _ensure_gateways(session, new, now)
            gateways.update(_gateways(session, list(dict.fromkeys(site for site, _g in new))))
        query = select(Device).where(Device.site.in_(sites))
        devices = {(d.site, d.device_id): d for d in session.scalars(query)}
        registered = self._ports.registered(
            session,
            {
                (site, d)
                for site, _g, telemetry in reports
                for d, _k in _reported_devices(telemetry)
            },
        )
        first: dict[tuple[str, str], tuple[str, DeviceKind]] = {}
        for site, gateway, telemetry in reports:
            for device_id, kind in _reported_devices(telemetry):
                key = (site, device_id)
                if key not in devices and owner(gateway, registered.get(key), None) == gateway:
                    first.setdefault(key, (gateway, kind))
        if first:
            ensure_devices(session, [(s, g, d, k) for (s, d), (g, k) in first.items()], now)
            query = select(Device).where(
                Device.site.in_({s for s, _d in first}),
                Device.device_id.in_({d for _s, d in first}),
            )
            devices.update({(d.site, d.device_id): d for d in session.scalars(query)})
        refused: set[Claim] = set()
        for site, gateway, telemetry in reports:
            for device_id, _kind in _reported_devices(telemetry):
                key = (site, device_id)
                heard = devices[key].gateway if key in devices else None
                if owner(gateway, registered.get(key), heard) != gateway:
                    refused.add((site, gateway, device_id))
        prime_twins(session, sites)
        prime_open_keys(session, sites)
        battery = self._battery_history(session, reports, devices, now)
        return _Batch(session, now, gateways, devices, battery, refused)

    def _battery_history(
        self,
        session: Session,
        reports: Sequence[tuple[str, str, TelemetryData]],
        devices: dict[tuple[str, str], Device],
        now: int,
    ) -> _History:
        """The forecast's points of every lock that may take a sample in this batch (its
        interval is up, or its battery changed), in one query; :meth:`_sample` adds the
        point it takes. A lock missing here queries its own, as it always did."""
        every = self._settings.fleet_sample_every_s
        wanted: set[tuple[str, SubjectKind, str]] = set()
        for site, _gateway, telemetry in reports:
            for lock in telemetry.locks:
                dev = devices.get((site, lock.lock_id))
                if dev is None:
                    continue  # not there even after the load created it: queries its own
                due = dev.sampled_at is None or now - dev.sampled_at >= every
                changed = lock.battery_pct is not None and lock.battery_pct != dev.battery_pct
                has_battery = lock.battery_pct is not None or dev.battery_pct is not None
                if (due or changed) and has_battery and dev.sampled_at != now:
                    wanted.add((site, SubjectKind(dev.kind.value), dev.device_id))
        if not wanted:
            return {}
        out: _History = {key: [] for key in wanted}
        rows = session.execute(
            select(
                HealthSample.site,
                HealthSample.subject_kind,
                HealthSample.subject,
                HealthSample.at,
                HealthSample.battery_pct,
            ).where(
                HealthSample.site.in_({site for site, _k, _s in wanted}),
                HealthSample.subject.in_({subject for _site, _k, subject in wanted}),
                HealthSample.at >= now - rules.FORECAST_WINDOW_S,
                HealthSample.battery_pct.is_not(None),
            )
        )
        for site, kind, subject, at, pct in rows:
            points = out.get((site, kind, subject))
            if points is not None and pct is not None:
                points.append(rules.BatterySample(at, pct))
        return out

    def record_events(self, events: Sequence[tuple[str, str, LockEventData]]) -> None:
        """Lock events: each lock's numbering (:meth:`_numbering`), and the events that open
        or close alerts (lockout, held open, jam) or carry a battery level. Idempotent: an
        alert remembers the event (``boot``, ``seq``) that opened it, and only a later event
        closes it."""
        if not events:
            return
        now = int(self._clock.now())
        by_lock: dict[tuple[str, str], list[tuple[str, LockEventData]]] = {}
        for site, gateway, event in events:
            by_lock.setdefault((site, event.lock_id), []).append((gateway, event))
        with self._sessions.begin() as session:
            # every lock of a batch moves on: its numbering is read and written as plain
            # rows (one query, one statement); a device is loaded only when it has news
            numbering = _lock_numbering(session, list(by_lock))
            self._refuse_events(session, by_lock, numbering, now)
            missing = [key for key in by_lock if key not in numbering]
            if missing:  # a lock heard of for the first time
                for site in dict.fromkeys(site for site, _lock in missing):
                    ensure_site(session, site, now, ports=self._ports)
                ensure_devices(
                    session,
                    [
                        (site, by_lock[site, lock][-1][0], lock, DeviceKind.LOCK)
                        for site, lock in missing
                    ],
                    now,
                )
                numbering.update(_lock_numbering(session, missing))
            open_now = open_keys_of_kinds(session, _CLOSABLE)
            loaded: dict[int, Device] = {}

            def device(num: _Numbering) -> Device:
                dev = loaded.get(num.id)
                if dev is None:
                    dev = loaded[num.id] = session.get_one(Device, num.id)
                return dev

            for key, items in by_lock.items():
                num = numbering[key]
                if num.gateway != items[-1][0]:
                    num.gateway = device(num).gateway = items[-1][0]
                for gateway, event in items:
                    self._numbering(session, num, event, now)
                    if event.kind not in RELEVANT_EVENTS and _opening(event) is None:
                        continue  # nearly always: an entry, a door, a relock
                    if event.kind in _CLOSES and event.kind not in _OPENS:
                        subject = Subject(key[0], gateway, SubjectKind.LOCK, event.lock_id)
                        if all(
                            open_key(kind, subject) not in open_now
                            for kind, _ in _CLOSES[event.kind]
                        ):
                            continue  # nearly always: an unlock with no jam or lockout open
                    dev = device(num)
                    # the boot as numbered so far (written below): _later compares with it
                    set_committed_value(dev, "event_boot", num.boot)
                    self._event(session, dev, event, now)
            moved = [n for n in numbering.values() if n.moved]
            if moved:  # the only writer of the numbering columns: one statement
                session.flush()  # the devices changed above first (a moved gateway)
                session.connection().execute(
                    update(Device)
                    .where(Device.id == bindparam("b_id"))
                    .values(
                        event_boot=bindparam("b_boot"),
                        boot_seen_at=bindparam("b_seen"),
                        event_seq=bindparam("b_seq"),
                        event_lock_ts=bindparam("b_ts"),
                    )
                    .execution_options(synchronize_session=False),
                    [
                        {
                            "b_id": n.id,
                            "b_boot": n.boot,
                            "b_seen": n.boot_seen_at,
                            "b_seq": n.seq,
                            "b_ts": n.lock_ts,
                        }
                        for n in moved
                    ],
                )

    def _refuse_events(
        self,
        session: Session,
        by_lock: dict[tuple[str, str], list[tuple[str, LockEventData]]],
        numbering: dict[tuple[str, str], _Numbering],
        now: int,
    ) -> None:
        """Take out of ``by_lock`` the events a gateway sent of a lock not its own
        (:func:`~cloud.fleet.ownership.owner`), and refuse them: they neither move the lock
        nor open or close its alerts."""
        registered = self._ports.registered(session, set(by_lock))
        refused: list[Claim] = []
        for key, items in list(by_lock.items()):
            known = numbering[key].gateway if key in numbering else None
            own = owner(items[0][0], registered.get(key), known)
            refused += [(key[0], gateway, key[1]) for gateway, _e in items if gateway != own]
            kept = [(gateway, event) for gateway, event in items if gateway == own]
            if kept:
                by_lock[key] = kept
            else:
                del by_lock[key]
        refuse(
            session,
            self._settings,
            now,
            refused,
            what=LOCK_HEALTH_WHAT,
            counter=self.refused,
            dropped=len(refused),
        )

    def _numbering(
        self,
        session: Session,
        num: _Numbering,
        event: LockEventData,
        now: int,
    ) -> None:
        """Follow the lock's event numbering (the device's view). A new boot (its counter
        started again: a battery change, a reset, a swapped lock) is news, logged and shown.
        A seq lower than one seen before in the same boot is a redelivery, or events
        arriving out of order, unless the lock's clock moved on: then its numbers went
        back, and events numbered again are dropped as duplicates (a lock without boot ids,
        boot 0, that restarted; or faulty firmware): that is an alert."""
        if num.boot != event.boot:
            if num.boot is not None:
                log.info(
                    "lock %s at %s counts its events anew: boot %d (was %d), from seq %d",
                    num.device_id,
                    num.site,
                    event.boot,
                    num.boot,
                    event.seq,
                )
                resolve_alert(
                    session,
                    now,
                    AlertKind.SEQ_BACKWARDS,
                    num.subject,
                    "the lock started a new boot",
                )
            num.boot, num.boot_seen_at = event.boot, now
            num.follow(event)
            return
        last_seq, last_ts = num.seq or 0, num.lock_ts or 0
        if event.seq > last_seq:
            num.follow(event)
            return
        if event.seq == last_seq or event.lock_ts <= last_ts:
            return  # a redelivery, or an earlier event arriving late
        open_alert(
            session,
            self._settings,
            now,
            AlertKind.SEQ_BACKWARDS,
            num.subject,
            message=f"the lock's event numbers went back from {last_seq} to {event.seq} "
            f"within one boot ({event.boot}): events it numbers again are taken for "
            "duplicates and missing from the audit (a lock without boot ids restarted, "
            "or its firmware is faulty)",
            source_seq=event.seq,
            source_boot=event.boot,
        )
        num.follow(event)  # follow the new numbers

    def _event(self, session: Session, dev: Device, event: LockEventData, now: int) -> None:
        subject = device_subject(dev)
        if event.kind is LockEventKind.BATTERY and event.value is not None:
            if 0 <= event.value <= 100:
                self._battery(session, dev, event.value, now)
            return
        opening = _opening(event)
        if opening is not None:
            kind, message = opening
            if kind in rules.QUIET_CLEARS and is_open(session, kind, subject):
                seen_again(session, now, kind, subject)  # its quiet hour starts again
                return
            seen = session.scalar(
                select(Alert.id).where(
                    Alert.kind == kind,
                    Alert.site == dev.site,
                    Alert.subject == dev.device_id,
                    Alert.source_seq == event.seq,
                    Alert.source_boot == event.boot,
                )
            )
            if seen is None:  # a redelivered event does not open its alert again
                open_alert(
                    session,
                    self._settings,
                    now,
                    kind,
                    subject,
                    message=message,
                    source_seq=event.seq,
                    source_boot=event.boot,
                )
        for kind, resolution in _CLOSES.get(event.kind, ()):
            if not is_open(session, kind, subject):
                continue  # nearly always: an unlock with no jam or lockout open
            alert = open_alert_of(session, kind, subject)
            if alert is not None and _later(alert, event, dev):
                resolve_alert(session, now, kind, subject, resolution)

    # ---------------------------------------------------------------- devices

    def _lock(
        self, batch: _Batch, site: str, gateway: str, lock: LockTelemetry, interval: float
    ) -> None:
        session, now = batch.session, batch.now
        dev = batch.device(site, gateway, lock.lock_id, DeviceKind.LOCK)
        subject = device_subject(dev)
        dev.reachable = lock.reachable
        dev.clock_offset_s = lock.clock_offset_s
        dev.clock_drift_s = lock.clock_drift_s
        dev.rssi_dbm = lock.rssi_dbm
        dev.door_open = lock.door_open
        dev.locked_out = lock.locked_out
        dev.last_sync_at = lock.last_sync_at
        dev.next_sync_at = lock.next_sync_at
        dev.telemetry_at = now
        if lock.firmware is not None:
            dev.firmware = lock.firmware
            report_firmware(session, subject, dev.firmware, now)
        if lock.battery_pct is not None:
            self._battery(session, dev, lock.battery_pct, now, batch.battery)
        drifting = rules.clock_drifting(lock.clock_offset_s, lock.clock_drift_s)
        if drifting:
            off = max(abs(x) for x in (lock.clock_offset_s, lock.clock_drift_s) if x is not None)
            open_alert(
                session,
                self._settings,
                now,
                AlertKind.CLOCK_DRIFT,
                subject,
                message=f"the lock's clock is {off:.0f} s off (more than "
                f"{rules.CLOCK_DRIFT_S:.0f} s): PIN windows open and close late or early",
            )
        elif drifting is False:
            resolve_alert(session, now, AlertKind.CLOCK_DRIFT, subject, "the clock is right again")
        if lock.locked_out:
            open_alert(
                session,
                self._settings,
                now,
                AlertKind.LOCKOUT,
                subject,
                message="keypad locked out after repeated wrong PINs (someone may be guessing)",
            )
        elif lock.locked_out is False:
            self._settle(session, AlertKind.LOCKOUT, subject, now, "the keypad lockout ended")
        if lock.door_open is False:
            self._settle(session, AlertKind.DOOR_HELD_OPEN, subject, now, "the door is closed")
        due = rules.sync_due(dev.last_sync_at, dev.next_sync_at, dev.first_seen_at, interval)
        if not rules.sync_missed(due, now, self._settings.fleet_sync_grace_s):
            resolve_alert(session, now, AlertKind.MISSED_SYNC, subject, "the lock synced")
        self._sample(session, dev, now, history=batch.battery)

    def _display(self, batch: _Batch, site: str, gateway: str, display: DisplayTelemetry) -> None:
        dev = batch.device(site, gateway, display.display_id, DeviceKind.DISPLAY)
        dev.reachable = display.reachable
        dev.shown_version = display.shown_version
        dev.telemetry_at = batch.now
        if display.firmware is not None:
            dev.firmware = display.firmware
            report_firmware(batch.session, device_subject(dev), dev.firmware, batch.now)

    def _reader(self, batch: _Batch, site: str, gateway: str, reader: CardReaderTelemetry) -> None:
        dev = batch.device(site, gateway, reader.reader_id, DeviceKind.READER)
        dev.reachable = reader.reachable
        dev.telemetry_at = batch.now

    def _settle(
        self, session: Session, kind: AlertKind, subject: Subject, now: int, resolution: str
    ) -> None:
        # a report taken before the event that opened the alert may arrive after it
        if not is_open(session, kind, subject):
            return  # nearly always, and resolve_alert would find nothing to resolve
        alert = open_alert_of(session, kind, subject)
        if alert is not None and now - alert.opened_at >= rules.SETTLE_S:
            resolve_alert(session, now, kind, subject, resolution)

    def _battery(
        self, session: Session, dev: Device, pct: int, now: int, history: _History | None = None
    ) -> None:
        changed = dev.battery_pct != pct
        dev.battery_pct = pct
        subject = device_subject(dev)
        level = rules.battery_alert(pct)
        for kind in (AlertKind.BATTERY_LOW, AlertKind.BATTERY_CRITICAL):
            if kind is not level:
                resolve_alert(session, now, kind, subject, f"battery at {pct} %")
        if level is not None:
            limit = (
                rules.BATTERY_CRITICAL_PCT
                if level is AlertKind.BATTERY_CRITICAL
                else rules.BATTERY_LOW_PCT
            )
            open_alert(
                session,
                self._settings,
                now,
                level,
                subject,
                message=f"battery at {pct} % (under {limit} %): replace it soon",
            )
        if changed:
            self._sample(session, dev, now, force=True, history=history)

    def _sample(
        self,
        session: Session,
        dev: Device,
        now: int,
        *,
        force: bool = False,
        history: _History | None = None,
    ) -> None:
        """One history point per sampling interval (or at a battery change), and the
        battery forecast from the recent points (``history``: loaded for the batch)."""
        every = self._settings.fleet_sample_every_s
        if not force and dev.sampled_at is not None and now - dev.sampled_at < every:
            return
        if dev.sampled_at == now:
            return  # a second reason to sample in the same second
        dev.sampled_at = now
        session.add(
            HealthSample(
                site=dev.site,
                subject_kind=SubjectKind(dev.kind.value),
                subject=dev.device_id,
                at=now,
                battery_pct=dev.battery_pct,
                clock_offset_s=dev.clock_offset_s,
                rssi_dbm=dev.rssi_dbm,
                last_sync_at=dev.last_sync_at,
            )
        )
        if dev.battery_pct is None:
            return
        kind = SubjectKind(dev.kind.value)
        points = None if history is None else history.get((dev.site, kind, dev.device_id))
        if points is not None:
            points.append(rules.BatterySample(now, dev.battery_pct))  # the one just added
        else:
            session.flush()
            rows = session.execute(
                select(HealthSample.at, HealthSample.battery_pct).where(
                    HealthSample.site == dev.site,
                    HealthSample.subject == dev.device_id,
                    HealthSample.subject_kind == kind,
                    HealthSample.at >= now - rules.FORECAST_WINDOW_S,
                    HealthSample.battery_pct.is_not(None),
                )
            )
            points = [rules.BatterySample(at, pct) for at, pct in rows if pct is not None]
        days = rules.battery_days_left(points, now)
        dev.battery_days_left = days
        subject = device_subject(dev)
        if days is not None and days < rules.FORECAST_ALERT_DAYS:
            open_alert(
                session,
                self._settings,
                now,
                AlertKind.BATTERY_FORECAST,
                subject,
                message=f"at the current drain the battery ({dev.battery_pct} %) is empty in about "
                f"{days:.1f} days",
            )
        elif days is None or days >= rules.FORECAST_ALERT_DAYS:
            resolve_alert(
                session, now, AlertKind.BATTERY_FORECAST, subject, "the forecast is 14 days or more"
            )

    # ----------------------------------------------------------------- periodic

    def gateway_states(self) -> dict[tuple[str, str], str]:
        """What the cloud believes of every gateway it heard of: ``online`` or ``offline``,
        by (site, gateway)."""
        with self._sessions() as session:
            rows = session.execute(select(Gateway.site, Gateway.gateway, Gateway.state))
            return {(site, gateway): state for site, gateway, state in rows}

    def check(self, now: float, listening_since: float | None) -> HealthRun:
        """Gateways silent beyond their heartbeat (judged only when ``listening_since``,
        the time the cloud's MQTT connection came up, is given), locks that missed
        their sync, and guessing or tampering that went quiet; opens and resolves the
        alerts."""
        at = int(now)
        settings = self._settings
        offline = missed = 0
        with self._sessions.begin() as session:
            configs = desired_configs(session)
            gateways = session.scalars(select(Gateway)).all()
            locks = session.scalars(select(Device).where(Device.kind == DeviceKind.LOCK)).all()
            prime_open_keys(session, {g.site for g in gateways} | {d.site for d in locks})
            for gw in gateways:
                subject = gateway_subject(gw.site, gw.gateway)
                if gw.state != GatewayState.ONLINE.value:
                    _set_available(gw, False, at)
                    offline += 1
                    open_alert(  # normally open already, from the will itself
                        session,
                        settings,
                        at,
                        AlertKind.GATEWAY_OFFLINE,
                        subject,
                        message="the agent went offline (its last will: the connection "
                        "dropped, or it stopped)",
                    )
                    continue
                if listening_since is None:
                    continue
                interval = heartbeat_interval(configs.get((gw.site, gw.gateway)), settings)
                heard = max(gw.last_seen, listening_since)
                deadline = rules.heartbeat_deadline(
                    heard, interval, settings.fleet_heartbeat_misses
                )
                if now <= deadline:
                    continue
                offline += 1
                if gw.available is not False:
                    _set_available(gw, False, at)
                open_alert(
                    session,
                    settings,
                    at,
                    AlertKind.GATEWAY_OFFLINE,
                    subject,
                    message=f"no telemetry for {at - gw.last_seen} s (it comes every "
                    f"{interval:.0f} s): the agent or its connection is down",
                )
            up = {(g.site, g.gateway) for g in gateways if rules.is_available(g.state, g.available)}
            for dev in locks:
                if (dev.site, dev.gateway) not in up:
                    continue  # nothing is known while its gateway is away
                interval = sync_interval(configs.get((dev.site, dev.gateway)), settings)
                due = rules.sync_due(
                    dev.last_sync_at, dev.next_sync_at, dev.first_seen_at, interval
                )
                subject = device_subject(dev)
                if rules.sync_missed(due, now, settings.fleet_sync_grace_s):
                    missed += 1
                    last = (
                        "never"
                        if dev.last_sync_at is None
                        else format_local(dev.last_sync_at, settings.zone)
                    )
                    open_alert(
                        session,
                        settings,
                        at,
                        AlertKind.MISSED_SYNC,
                        subject,
                        message=f"the lock missed its sync (due "
                        f"{format_local(due, settings.zone)}, last {last}): it may be out of "
                        "reach or its battery dead",
                    )
                else:
                    resolve_alert(session, at, AlertKind.MISSED_SYNC, subject, "the lock synced")
            self._quiet(session, at)
        return HealthRun(offline, missed)

    def _quiet(self, session: Session, at: int) -> None:
        """Resolve the alerts about something someone did (guessing PINs, forging
        frames) once it has not happened for :data:`rules.QUIET_S`."""
        quiet = session.scalars(
            select(Alert).where(
                Alert.open_key.is_not(None),
                Alert.kind.in_(rules.QUIET_CLEARS),
                func.coalesce(Alert.seen_at, Alert.opened_at) <= at - rules.QUIET_S,
            )
        ).all()
        for alert in quiet:
            subject = Subject(alert.site, alert.gateway, alert.subject_kind, alert.subject)
            resolve_alert(session, at, alert.kind, subject, _QUIETED[alert.kind])

    def purge_samples(self, now: float) -> int:
        """Drop history older than ``fleet_sample_keep_days``."""
        cutoff = int(now) - self._settings.fleet_sample_keep_days * rules.DAY_S
        with self._sessions.begin() as session:
            result = session.execute(delete(HealthSample).where(HealthSample.at < cutoff))
            return int(result.rowcount or 0)  # type: ignore[attr-defined]  # CursorResult


# the recent battery points of locks, by (site, kind, device), for the forecast
_History = dict[tuple[str, SubjectKind, str], list[rules.BatterySample]]


@dataclass(frozen=True, slots=True)
class _Batch:
    """A batch of telemetry's transaction and the rows it touches, loaded up front
    (:meth:`HealthService._load`; the twins and open alerts are primed in the session)."""

    session: Session
    now: int
    gateways: dict[tuple[str, str], Gateway]
    devices: dict[tuple[str, str], Device]
    battery: _History
    refused: set[Claim]  # devices reported by a gateway they do not belong to

    def device(self, site: str, gateway: str, device_id: str, kind: DeviceKind) -> Device:
        """The device, as :func:`ensure_device` gives it (which creates one the load did not
        find); moved to ``gateway`` when its domain registered it there (a replaced Pi):
        the load refused every other report of another gateway's device."""
        dev = self.devices.get((site, device_id))
        if dev is None:
            dev = ensure_device(self.session, site, gateway, device_id, kind=kind, now=self.now)
            self.devices[(site, device_id)] = dev
        dev.gateway = gateway
        return dev


def _reported_devices(telemetry: TelemetryData) -> Iterator[tuple[str, DeviceKind]]:
    yield from ((lock.lock_id, DeviceKind.LOCK) for lock in telemetry.locks)
    yield from ((d.display_id, DeviceKind.DISPLAY) for d in telemetry.displays)
    yield from ((r.reader_id, DeviceKind.READER) for r in telemetry.card_readers)


def _gateways(session: Session, sites: Sequence[str]) -> dict[tuple[str, str], Gateway]:
    query = select(Gateway).where(Gateway.site.in_(sites))
    return {(g.site, g.gateway): g for g in session.scalars(query)}


def _ensure_gateways(session: Session, gateways: Sequence[tuple[str, str]], now: int) -> None:
    """Create the rows of gateways whose telemetry came before any status (as
    :func:`_gateway` does, in one statement, race-free with other workers)."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    rows = [
        {
            "site": site,
            "gateway": gateway,
            "state": GatewayState.ONLINE.value,  # it is talking, so it is online
            "last_seen": now,
            "outbox_growth": 0,
        }
        for site, gateway in gateways
    ]
    stmt = insert(Gateway).values(rows).on_conflict_do_nothing(index_elements=["site", "gateway"])
    session.execute(stmt)


def _set_available(gw: Gateway, available: bool, now: int) -> None:
    if gw.available is not available:
        gw.available = available
        gw.available_since = now


def _later(alert: Alert, event: LockEventData, dev: Device) -> bool:
    """Whether ``event`` came after the one that opened ``alert``: a higher seq of the same
    boot, or any event of the lock's current boot when the alert is of an earlier one."""
    if alert.source_seq is None:
        return True
    if alert.source_boot != event.boot:
        return event.boot == dev.event_boot
    return alert.source_seq < event.seq


_DEVICES_PER_QUERY = 500


@dataclass(slots=True)
class _Numbering:
    """A lock device's event numbering, as a plain row (``moved``: to be written)."""

    id: int
    site: str
    device_id: str
    gateway: str
    boot: int | None
    boot_seen_at: int | None
    seq: int | None
    lock_ts: int | None
    moved: bool = False

    @property
    def subject(self) -> Subject:
        return Subject(self.site, self.gateway, SubjectKind.LOCK, self.device_id)

    def follow(self, event: LockEventData) -> None:
        self.seq, self.lock_ts, self.moved = event.seq, event.lock_ts, True


def _lock_numbering(
    session: Session, keys: list[tuple[str, str]]
) -> dict[tuple[str, str], _Numbering]:
    """The numbering of the lock devices ``(site, lock_id)`` that exist, a few queries per
    thousand, as plain rows."""
    out: dict[tuple[str, str], _Numbering] = {}
    columns = (
        Device.id,
        Device.site,
        Device.device_id,
        Device.gateway,
        Device.event_boot,
        Device.boot_seen_at,
        Device.event_seq,
        Device.event_lock_ts,
    )
    for start in range(0, len(keys), _DEVICES_PER_QUERY):
        chunk = keys[start : start + _DEVICES_PER_QUERY]
        query = select(*columns).where(tuple_(Device.site, Device.device_id).in_(chunk))
        for row in session.execute(query):
            num = _Numbering(*row)
            out[(num.site, num.device_id)] = num
    return out
