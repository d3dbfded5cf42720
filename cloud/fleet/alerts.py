"""Alerts: opened once per condition, acknowledged by a person, resolved by the condition
clearing, mailed to on-call when they open.

Opening is ``INSERT … ON CONFLICT (open_key) DO NOTHING``: ``open_key`` names the kind and
the subject and is unique while the alert is open, so two workers (or a message delivered
twice) that see the same condition open one alert and send one mail, in the transaction
that recorded the condition. Resolving clears ``open_key``; the next occurrence opens a
new alert.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.mail import queue_mail
from cloud.core.views import UserView
from cloud.errors import InvalidRequestError, NotFoundError
from cloud.fleet.audit import audit
from cloud.fleet.kinds import SEVERITY, AlertKind, Severity, Subject
from cloud.fleet.models import Alert
from cloud.fleet.views import AlertView
from cloud.localtime import format_local
from cloud.settings import CloudSettings
from protocol.clock import Clock

ALERT_STATES = ("open", "unacknowledged", "resolved", "all")
_SITES_PER_QUERY = 1000  # bound parameters stay well under SQLite's limit
_E = TypeVar("_E", AlertKind, Severity)


def open_key(kind: AlertKind, subject: Subject) -> str:
    # a StrEnum formats as its value, without the cost of ``.value`` (a dozen keys a lock)
    return f"{kind}:{subject.site}:{subject.kind}:{subject.id}"


def _open_keys(session: Session, site: str) -> set[str]:
    """The open alerts of ``site``, loaded once per transaction: a report is checked
    against a dozen conditions, and nearly always none of them had an alert open."""
    cache: dict[str, set[str]] = session.info.setdefault("fleet_open_keys", {})
    keys = cache.get(site)
    if keys is None:
        keys = {
            k
            for k in session.scalars(
                select(Alert.open_key).where(Alert.site == site, Alert.open_key.is_not(None))
            )
            if k is not None
        }
        cache[site] = keys
    return keys


def prime_open_keys(session: Session, sites: Iterable[str]) -> None:
    """Load the open alerts of many sites (the periodic pass's, a batch of reports') in a
    query per thousand sites; a site loaded before in the transaction is kept as it is."""
    cache: dict[str, set[str]] = session.info.setdefault("fleet_open_keys", {})
    todo = [site for site in dict.fromkeys(sites) if site not in cache]
    for site in todo:
        cache[site] = set()
    for start in range(0, len(todo), _SITES_PER_QUERY):
        rows = session.execute(
            select(Alert.site, Alert.open_key).where(
                Alert.site.in_(todo[start : start + _SITES_PER_QUERY]),
                Alert.open_key.is_not(None),
            )
        )
        for site, key in rows:
            if key is not None:
                cache[site].add(key)


def open_keys_of_kinds(session: Session, kinds: Collection[AlertKind]) -> set[str]:
    """The keys of every open alert of ``kinds``, fleet-wide, in one query: the lock
    events of a batch come from thousands of sites, and the alerts they may close (a jam,
    a lockout, a door held open) are nearly always none."""
    rows = session.scalars(
        select(Alert.open_key).where(Alert.open_key.is_not(None), Alert.kind.in_(list(kinds)))
    )
    return {key for key in rows if key is not None}


def open_alert(
    session: Session,
    settings: CloudSettings,
    now: int,
    kind: AlertKind,
    subject: Subject,
    *,
    message: str,
    source_seq: int | None = None,
    source_boot: int | None = None,
) -> int | None:
    """Open ``kind`` about ``subject`` unless it is open already; the new alert's id (and
    its mail to on-call queued in the same transaction), or None."""
    key = open_key(kind, subject)
    if key in _open_keys(session, subject.site):
        return None  # the usual case for a condition that lasts: no write at all
    values = {
        "kind": kind,
        "severity": SEVERITY[kind],
        "site": subject.site,
        "gateway": subject.gateway,
        "subject_kind": subject.kind,
        "subject": subject.id,
        "message": message[:300],
        "opened_at": now,
        "source_seq": source_seq,
        "source_boot": source_boot,
        "open_key": key,
        "seen_at": now,
    }
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = (
        insert(Alert)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["open_key"])
        .returning(Alert.id)
    )
    alert_id = session.execute(stmt).scalar()
    _open_keys(session, subject.site).add(key)  # opened now, or by someone before
    if alert_id is None:
        return None
    if settings.fleet_oncall_email:
        severity = SEVERITY[kind].value.upper()
        when = format_local(now, settings.zone)
        body = (
            f"{severity}: {kind.value.replace('_', ' ')} on {subject.label}\n\n"
            f"{message}\n\nOpened {when} ({settings.timezone}), alert #{alert_id}.\n"
            f"Acknowledge it in the alerts inbox: {settings.public_url.rstrip('/')}"
            f"/fleet/alerts#alert-{alert_id}\n"
            "It resolves by itself when the condition clears.\n"
        )
        subject_line = f"[Denen {severity}] {kind.value.replace('_', ' ')}: {subject.label}"
        queue_mail(session, settings.fleet_oncall_email, subject_line, body, now)
    return int(alert_id)


def seen_again(session: Session, now: int, kind: AlertKind, subject: Subject) -> None:
    """The condition of the open alert of ``kind`` about ``subject`` showed again: an
    alert that clears after a quiet period counts it from now."""
    session.execute(
        update(Alert)
        .where(Alert.open_key == open_key(kind, subject))
        .values(seen_at=now)
        .execution_options(synchronize_session=False)
    )


def open_alert_of(session: Session, kind: AlertKind, subject: Subject) -> Alert | None:
    """The open alert of ``kind`` about ``subject``, if any."""
    return session.scalars(select(Alert).where(Alert.open_key == open_key(kind, subject))).first()


def is_open(session: Session, kind: AlertKind, subject: Subject) -> bool:
    """Whether ``kind`` is open about ``subject``, from the transaction's cache of the
    site's open alerts (no query per event: lock events stream in by thousands)."""
    return open_key(kind, subject) in _open_keys(session, subject.site)


def resolve_alert(
    session: Session, now: int, kind: AlertKind, subject: Subject, resolution: str
) -> bool:
    """Resolve the open alert of ``kind`` about ``subject``; False when none was open."""
    key = open_key(kind, subject)
    keys = _open_keys(session, subject.site)
    if key not in keys:
        return False
    keys.discard(key)
    # no flush first (a batch's changes wait for its commit): with the key in the cache,
    # no unflushed change touches its row, as reopening the key flushed (an ORM INSERT)
    with session.no_autoflush:
        alert = open_alert_of(session, kind, subject)
    if alert is None:
        return False
    alert.resolved_at = now
    alert.resolution = resolution[:200]
    alert.open_key = None
    return True


def alert_view(a: Alert) -> AlertView:
    return AlertView(
        id=a.id,
        kind=a.kind.value,
        severity=a.severity.value,
        site=a.site,
        gateway=a.gateway,
        subject_kind=a.subject_kind.value,
        subject=a.subject,
        message=a.message,
        opened_at=a.opened_at,
        acknowledged_at=a.acknowledged_at,
        acknowledged_by=a.acknowledged_by,
        resolved_at=a.resolved_at,
        resolution=a.resolution,
    )


class AlertService:
    """The alerts inbox: list, filter, acknowledge."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def alerts(
        self,
        scope: Collection[str] | None,
        *,
        state: str = "open",
        site: str | None = None,
        kind: str | None = None,
        severity: str | None = None,
        limit: int = 100,
    ) -> list[AlertView]:
        """Newest first. ``state``: ``open``, ``unacknowledged`` (open and not yet
        acknowledged), ``resolved`` or ``all``; ``scope`` None: every site."""
        if state not in ALERT_STATES:
            raise InvalidRequestError(f"state is one of {', '.join(ALERT_STATES)}")
        query = select(Alert).order_by(Alert.opened_at.desc(), Alert.id.desc()).limit(limit)
        if state in ("open", "unacknowledged"):
            query = query.where(Alert.resolved_at.is_(None))
        if state == "unacknowledged":
            query = query.where(Alert.acknowledged_at.is_(None))
        if state == "resolved":
            query = query.where(Alert.resolved_at.is_not(None))
        if scope is not None:
            query = query.where(Alert.site.in_(list(scope)))
        if site is not None:
            query = query.where(Alert.site == site)
        if kind is not None:
            query = query.where(Alert.kind == _known(AlertKind, kind, "kind"))
        if severity is not None:
            query = query.where(Alert.severity == _known(Severity, severity, "severity"))
        with self._sessions() as session:
            return [alert_view(a) for a in session.scalars(query)]

    def open_counts(self) -> dict[tuple[str, str], int]:
        """Open alerts by (kind, severity), for the metrics."""
        query = (
            select(Alert.kind, Alert.severity, func.count())
            .where(Alert.resolved_at.is_(None))
            .group_by(Alert.kind, Alert.severity)
        )
        with self._sessions() as session:
            return {(k.value, s.value): n for k, s, n in session.execute(query)}

    def alert(self, alert_id: int, scope: Collection[str] | None) -> AlertView:
        """One alert (404 outside ``scope``)."""
        with self._sessions() as session:
            return alert_view(_get(session, alert_id, scope))

    def acknowledge(
        self, alert_id: int, user: UserView, scope: Collection[str] | None
    ) -> AlertView:
        """Someone has seen it and is on it; acknowledging twice keeps the first."""
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            alert = _get(session, alert_id, scope)
            if alert.acknowledged_at is None:
                alert.acknowledged_at = now
                alert.acknowledged_by = user.username
                audit(
                    session,
                    now,
                    user.username,
                    "alert.ack",
                    site=alert.site,
                    subject=alert.subject,
                    detail={"alert": alert.id, "kind": alert.kind.value},
                )
            return alert_view(alert)


def _get(session: Session, alert_id: int, scope: Collection[str] | None) -> Alert:
    alert = session.get(Alert, alert_id)
    if alert is None or (scope is not None and alert.site not in scope):
        raise NotFoundError(f"no alert #{alert_id}; list them at /api/fleet/alerts")
    return alert


def _known(enum: type[_E], value: str, what: str) -> _E:
    try:
        return enum(value)
    except ValueError:
        raise InvalidRequestError(f"{what} is one of {', '.join(m.value for m in enum)}") from None
