"""Sites, the city departments that own them, and the fleet's views of them.

Who sees which site is the cloud's one rule in :mod:`cloud.core.scope`: ops and
technicians every site; a facility manager or clinic staff the sites of the departments
they are members of. A site outside the caller's scope answers 404 like a site that does
not exist.

The overview and the detail pages are computed here from the health rows (see
:mod:`cloud.fleet.health`) and the open alerts.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.models import CityDepartment, DepartmentMember, Site, User
from cloud.core.scope import ALL_SITES_ROLES, Scope, sites_in_scope
from cloud.core.views import UserView
from cloud.errors import InvalidRequestError, NotFoundError
from cloud.fleet import rules
from cloud.fleet.alerts import alert_view
from cloud.fleet.audit import audit
from cloud.fleet.kinds import DeviceKind, Severity, SubjectKind
from cloud.fleet.models import Alert, Command, Device, Gateway, HealthSample, Twin
from cloud.fleet.ports import NO_ANSWERS, FleetPorts
from cloud.fleet.site_rows import ensure_site
from cloud.fleet.twins import desired_configs, heartbeat_interval, sync_interval, twin_view
from cloud.fleet.views import (
    CommandView,
    DepartmentView,
    DeviceDetail,
    DeviceView,
    GatewayDetail,
    GatewayView,
    HealthCounts,
    SampleView,
    SiteDetail,
    SiteSummary,
)
from cloud.settings import CloudSettings
from protocol.clock import Clock
from protocol.ids import is_slug
from protocol.messages import AgentConfigData

RINGS = (0, 1, 2)


def ensure_device(
    session: Session, site: str, gateway: str, device_id: str, *, kind: DeviceKind, now: int
) -> Device:
    """The device row (created on first report or registration, race-free with other
    workers), moved to ``gateway`` if it changed gateways."""
    query = select(Device).where(Device.site == site, Device.device_id == device_id)
    dev = session.scalars(query).first()
    if dev is None:
        insert = (
            postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        )
        session.execute(
            insert(Device)
            .values(site=site, gateway=gateway, device_id=device_id, kind=kind, first_seen_at=now)
            .on_conflict_do_nothing(index_elements=["site", "device_id"])
        )
        dev = session.scalars(query).one()
    dev.gateway = gateway
    return dev


def ensure_devices(
    session: Session, devices: Sequence[tuple[str, str, str, DeviceKind]], now: int
) -> None:
    """Create the rows of many devices ``(site, gateway, device_id, kind)`` in one
    statement, each unless it exists (race-free as :func:`ensure_device`; a device listed
    twice is created as its first listing says)."""
    if not devices:
        return
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    rows = [
        {
            "site": site,
            "gateway": gateway,
            "device_id": device_id,
            "kind": kind,
            "first_seen_at": now,
        }
        for site, gateway, device_id, kind in devices
    ]
    session.execute(
        insert(Device).values(rows).on_conflict_do_nothing(index_elements=["site", "device_id"])
    )


def put_department(
    session: Session, slug: str, name: str, *, actor: str, now: int
) -> CityDepartment:
    """Create or rename a city department, in ``session``'s transaction."""
    check_slug("department", slug)
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise InvalidRequestError("a department name has 1 to 200 characters")
    dep = session.get(CityDepartment, slug)
    if dep is None:
        dep = CityDepartment(slug=slug, name=name, created_at=now)
        session.add(dep)
    dep.name = name
    audit(session, now, actor, "department.put", subject=slug, detail={"name": name})
    session.flush()
    return dep


def add_member(session: Session, slug: str, username: str, *, actor: str, now: int) -> None:
    """Let ``username`` (a facility manager, clinic staff) act for the department's
    sites, in ``session``'s transaction."""
    if session.get(CityDepartment, slug) is None:
        raise NotFoundError(f"no department {slug!r}; create it first")
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None:
        raise NotFoundError(f"no user {username!r}")
    if session.get(DepartmentMember, (user.id, slug)) is None:
        session.add(DepartmentMember(user_id=user.id, department=slug))
        audit(session, now, actor, "department.member", subject=slug, detail={"user": username})
    session.flush()


def put_site(
    session: Session,
    slug: str,
    *,
    actor: str,
    now: int,
    name: str | None = None,
    department: str | None = None,
    ring: int | None = None,
    ports: FleetPorts = NO_ANSWERS,
) -> Site:
    """Create a site or change its name, department or default rollout ring, in
    ``session``'s transaction."""
    check_slug("site", slug)
    if ring is not None and ring not in RINGS:
        raise InvalidRequestError("ring is 0 (first sites), 1 (more) or 2 (the rest)")
    if department is not None and session.get(CityDepartment, department) is None:
        raise NotFoundError(f"no department {department!r}; create it first")
    ensure_site(session, slug, now, ports=ports)
    row = session.get(Site, slug)
    assert row is not None
    if name is not None:
        if not 1 <= len(name.strip()) <= 200:
            raise InvalidRequestError("a site name has 1 to 200 characters")
        row.name = name.strip()
    if department is not None:
        row.department = department
    if ring is not None:
        row.ring = ring
    audit(
        session,
        now,
        actor,
        "site.put",
        site=slug,
        detail={"name": row.name, "department": row.department, "ring": row.ring},
    )
    session.flush()
    return row


def command_view(c: Command) -> CommandView:
    return CommandView(
        transaction=c.transaction,
        verb=c.verb,
        site=c.site,
        gateway=c.gateway,
        device_id=c.device_id,
        data=c.data,
        requested_by=c.requested_by,
        reason=c.reason,
        created_at=c.created_at,
        expires_at=c.expires_at,
        status=c.status.value,
        sent_at=c.sent_at,
        replied_at=c.replied_at,
        reply=c.reply_data,
        error=c.reply_error,
        duplicate_replies=c.duplicate_replies,
        rollout_id=c.rollout_id,
        firmware_image_id=c.firmware_image_id,
    )


def check_slug(what: str, value: str) -> None:
    if not is_slug(value):
        raise InvalidRequestError(f"{what} {value[:40]!r} is not a slug [a-z0-9-]{{1,40}}")


@dataclass(frozen=True, slots=True)
class _Fleet:
    """Everything the views of some sites are computed from, loaded in one go."""

    sites: Sequence[Site]
    gateways: Sequence[Gateway]
    devices: Sequence[Device]
    alerts: Sequence[Alert]
    configs: dict[tuple[str, str], AgentConfigData]


class SiteService:
    """Departments, sites, devices' registration, and the fleet's views."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        settings: CloudSettings,
        ports: FleetPorts = NO_ANSWERS,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._settings = settings
        self._ports = ports

    # ------------------------------------------------------------------- scope

    def scope(self, user: UserView) -> Scope:
        """The sites ``user`` may see; None: every site (:mod:`cloud.core.scope`)."""
        if user.role in ALL_SITES_ROLES:
            return None
        with self._sessions() as session:
            return sites_in_scope(session, user)

    # ------------------------------------------------------------------- admin

    def put_department(self, slug: str, name: str, actor: str) -> DepartmentView:
        """Create or rename a city department."""
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            dep = put_department(session, slug, name, actor=actor, now=now)
            return self._department(session, dep)

    def departments(self) -> list[DepartmentView]:
        with self._sessions() as session:
            rows = session.scalars(select(CityDepartment).order_by(CityDepartment.slug)).all()
            return [self._department(session, d) for d in rows]

    def add_member(self, slug: str, username: str, actor: str) -> DepartmentView:
        """Let ``username`` (a facility manager, clinic staff) act for the department's
        sites."""
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            add_member(session, slug, username, actor=actor, now=now)
            dep = session.get(CityDepartment, slug)
            assert dep is not None
            return self._department(session, dep)

    def remove_member(self, slug: str, username: str, actor: str) -> DepartmentView:
        """``username`` no longer acts for the department's sites (they moved, or left):
        from the next request on, its pages and API answer as for any other site."""
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            dep = session.get(CityDepartment, slug)
            if dep is None:
                raise NotFoundError(f"no department {slug!r}; list them at /api/fleet/departments")
            user = session.scalars(select(User).where(User.username == username)).first()
            member = None if user is None else session.get(DepartmentMember, (user.id, slug))
            if member is None:
                raise NotFoundError(f"{username!r} is not a member of {slug!r}")
            session.delete(member)
            audit(
                session,
                now,
                actor,
                "department.member_removed",
                subject=slug,
                detail={"user": username},
            )
            session.flush()
            return self._department(session, dep)

    @staticmethod
    def _department(session: Session, dep: CityDepartment) -> DepartmentView:
        members = session.scalars(
            select(User.username)
            .join(DepartmentMember, DepartmentMember.user_id == User.id)
            .where(DepartmentMember.department == dep.slug)
            .order_by(User.username)
        )
        return DepartmentView(dep.slug, dep.name, tuple(members))

    def put_site(
        self,
        slug: str,
        *,
        actor: str,
        name: str | None = None,
        department: str | None = None,
        ring: int | None = None,
    ) -> SiteSummary:
        """Create a site or change its name, department or default rollout ring."""
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            put_site(
                session,
                slug,
                actor=actor,
                now=now,
                name=name,
                department=department,
                ring=ring,
                ports=self._ports,
            )
            return self._summaries(self._load(session, [slug]))[0]

    def put_device(
        self,
        site: str,
        device_id: str,
        *,
        actor: str,
        gateway: str,
        kind: DeviceKind,
        model: str | None = None,
        config: dict[str, Any] | None = None,
    ) -> DeviceView:
        """Register a device (or set its model and config): telemetry carries no model, and
        a firmware rollout targets the devices of the image's model."""
        check_slug("site", site)
        check_slug("gateway", gateway)
        check_slug("device", device_id)
        if model is not None and not 1 <= len(model.encode()) <= 32:
            raise InvalidRequestError("a model is 1 to 32 bytes (as in the firmware image)")
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            ensure_site(session, site, now, ports=self._ports)
            dev = ensure_device(session, site, gateway, device_id, kind=kind, now=now)
            if dev.kind is not kind:
                raise InvalidRequestError(
                    f"{device_id} at {site} is a {dev.kind.value}, not a {kind.value}"
                )
            if model is not None:
                dev.model = model
            if config is not None:
                dev.config = config
            audit(
                session,
                now,
                actor,
                "device.put",
                site=site,
                subject=device_id,
                detail={"kind": kind.value, "gateway": gateway, "model": dev.model},
            )
            session.flush()
            fleet = self._load(session, [site])
            return next(v for v in self._device_views(fleet) if v.device_id == device_id)

    # ------------------------------------------------------------------- views

    def slugs(self, scope: Collection[str] | None) -> list[str]:
        """The sites in ``scope`` (None: all), by slug: what a filter offers."""
        query = select(Site.slug).order_by(Site.slug)
        if scope is not None:
            query = query.where(Site.slug.in_(list(scope)))
        with self._sessions() as session:
            return list(session.scalars(query))

    def overview(self, scope: Collection[str] | None) -> list[SiteSummary]:
        """Every site in ``scope`` at a glance."""
        with self._sessions() as session:
            return self._summaries(self._load(session, None if scope is None else list(scope)))

    def site(self, slug: str, scope: Collection[str] | None) -> SiteDetail:
        """One site: its gateways, devices with their health, open alerts."""
        _visible(slug, scope)
        with self._sessions() as session:
            fleet = self._load(session, [slug])
            if not fleet.sites:
                raise NotFoundError(f"no site {slug!r}")
            return SiteDetail(
                summary=self._summaries(fleet)[0],
                gateways=tuple(self._gateway_view(g, fleet) for g in fleet.gateways),
                devices=tuple(self._device_views(fleet)),
                open_alerts=tuple(alert_view(a) for a in fleet.alerts),
            )

    def gateway(
        self, site: str, gateway: str, scope: Collection[str] | None, *, days: int = 7
    ) -> GatewayDetail:
        """A gateway: availability, health, the agent config twin (desired vs reported
        and since when they differ), its devices, open alerts, history, recent commands."""
        _visible(site, scope)
        with self._sessions() as session:
            fleet = self._load(session, [site])
            gw = next((g for g in fleet.gateways if g.gateway == gateway), None)
            if gw is None:
                raise NotFoundError(f"no gateway {site}/{gateway}")
            twin = session.get(Twin, (site, SubjectKind.GATEWAY, gateway))
            commands = session.scalars(
                select(Command)
                .where(Command.site == site, Command.gateway == gateway)
                .order_by(Command.id.desc())
                .limit(20)
            )
            return GatewayDetail(
                gateway=self._gateway_view(gw, fleet),
                twin=None if twin is None else twin_view(twin),
                devices=tuple(v for v in self._device_views(fleet) if v.gateway == gateway),
                open_alerts=tuple(
                    alert_view(a)
                    for a in fleet.alerts
                    if a.gateway == gateway and a.subject_kind is SubjectKind.GATEWAY
                ),
                history=self._history(session, site, SubjectKind.GATEWAY, gateway, days),
                recent_commands=tuple(command_view(c) for c in commands),
            )

    def device(
        self, site: str, device_id: str, scope: Collection[str] | None, *, days: int = 7
    ) -> DeviceDetail:
        """A device: health, forecast, the firmware twin, open alerts, history."""
        _visible(site, scope)
        with self._sessions() as session:
            fleet = self._load(session, [site])
            view = next((v for v in self._device_views(fleet) if v.device_id == device_id), None)
            if view is None:
                raise NotFoundError(f"no device {device_id!r} at {site}")
            kind = SubjectKind(view.kind)
            twin = session.get(Twin, (site, kind, device_id))
            return DeviceDetail(
                device=view,
                twin=None if twin is None else twin_view(twin),
                open_alerts=tuple(
                    alert_view(a)
                    for a in fleet.alerts
                    if a.subject == device_id and a.subject_kind is kind
                ),
                history=self._history(session, site, kind, device_id, days),
            )

    # ----------------------------------------------------------------- helpers

    def _load(self, session: Session, sites: list[str] | None) -> _Fleet:
        def within(column: Any) -> Any:
            return True if sites is None else column.in_(sites)

        return _Fleet(
            sites=session.scalars(select(Site).where(within(Site.slug)).order_by(Site.slug)).all(),
            gateways=session.scalars(
                select(Gateway).where(within(Gateway.site)).order_by(Gateway.site, Gateway.gateway)
            ).all(),
            devices=session.scalars(
                select(Device).where(within(Device.site)).order_by(Device.site, Device.device_id)
            ).all(),
            alerts=session.scalars(
                select(Alert)
                .where(within(Alert.site), Alert.resolved_at.is_(None))
                .order_by(Alert.opened_at.desc(), Alert.id.desc())
            ).all(),
            configs=desired_configs(session, sites),
        )

    def _gateway_view(self, gw: Gateway, fleet: _Fleet) -> GatewayView:
        return GatewayView(
            site=gw.site,
            gateway=gw.gateway,
            state=gw.state,
            available=rules.is_available(gw.state, gw.available),
            available_since=gw.available_since,
            last_seen=gw.last_seen,
            heartbeat_interval_s=heartbeat_interval(
                fleet.configs.get((gw.site, gw.gateway)), self._settings
            ),
            agent_version=gw.agent_version,
            telemetry_at=gw.telemetry_at,
            uptime_s=gw.uptime_s,
            outbox_depth=gw.outbox_depth,
            outbox_oldest_age_s=gw.outbox_oldest_age_s,
            frames_dropped=gw.frames_dropped,
            time_trusted=gw.time_trusted,
        )

    def _device_views(self, fleet: _Fleet) -> list[DeviceView]:
        now = self._clock.now()
        up = {
            (g.site, g.gateway) for g in fleet.gateways if rules.is_available(g.state, g.available)
        }
        severities: dict[tuple[str, str, SubjectKind], list[Severity]] = {}
        for a in fleet.alerts:
            severities.setdefault((a.site, a.subject, a.subject_kind), []).append(a.severity)
        out = []
        for d in fleet.devices:
            kind = SubjectKind(d.kind.value)
            found = severities.get((d.site, d.device_id, kind), [])
            due = None
            missed = False
            if d.kind is DeviceKind.LOCK:
                interval = sync_interval(fleet.configs.get((d.site, d.gateway)), self._settings)
                due = rules.sync_due(d.last_sync_at, d.next_sync_at, d.first_seen_at, interval)
                missed = rules.sync_missed(due, now, self._settings.fleet_sync_grace_s)
            health = rules.device_health(
                rules.DeviceHealthInput(
                    kind=d.kind.value,
                    gateway_available=(d.site, d.gateway) in up,
                    reachable=d.reachable,
                    sync_missed=missed,
                    open_critical=found.count(Severity.CRITICAL),
                    open_warning=found.count(Severity.WARNING),
                )
            )
            out.append(
                DeviceView(
                    site=d.site,
                    gateway=d.gateway,
                    device_id=d.device_id,
                    kind=d.kind.value,
                    model=d.model,
                    firmware=d.firmware,
                    health=health,
                    reachable=d.reachable,
                    battery_pct=d.battery_pct,
                    battery_days_left=(
                        None if d.battery_days_left is None else round(d.battery_days_left, 1)
                    ),
                    clock_offset_s=d.clock_offset_s,
                    clock_drift_s=d.clock_drift_s,
                    rssi_dbm=d.rssi_dbm,
                    door_open=d.door_open,
                    locked_out=d.locked_out,
                    last_sync_at=d.last_sync_at,
                    next_sync_at=d.next_sync_at,
                    sync_due_at=None if due is None else int(due),
                    telemetry_at=d.telemetry_at,
                    config=d.config,
                    event_boot=d.event_boot,
                    boot_seen_at=d.boot_seen_at,
                )
            )
        return out

    def _summaries(self, fleet: _Fleet) -> list[SiteSummary]:
        gateways: dict[str, list[Gateway]] = {}
        for g in fleet.gateways:
            gateways.setdefault(g.site, []).append(g)
        site_alerts: dict[str, list[Alert]] = {}
        for a in fleet.alerts:
            site_alerts.setdefault(a.site, []).append(a)
        site_health: dict[str, list[str]] = {}
        for d in self._device_views(fleet):
            site_health.setdefault(d.site, []).append(d.health)
        out = []
        for site in fleet.sites:
            gws = gateways.get(site.slug, [])
            online = sum(1 for g in gws if rules.is_available(g.state, g.available))
            alerts = site_alerts.get(site.slug, [])
            critical = sum(1 for a in alerts if a.severity is Severity.CRITICAL)
            health = site_health.get(site.slug, [])
            if not gws:
                status = "unknown"
            elif online < len(gws):
                status = "offline"
            elif critical:
                status = "critical"
            elif alerts:
                status = "warning"
            else:
                status = "ok"
            out.append(
                SiteSummary(
                    site=site.slug,
                    name=site.name,
                    department=site.department,
                    ring=site.ring,
                    status=status,
                    gateways_online=online,
                    gateways_total=len(gws),
                    devices=HealthCounts(
                        ok=health.count("ok"),
                        warning=health.count("warning"),
                        critical=health.count("critical"),
                        offline=health.count("offline"),
                    ),
                    open_alerts=len(alerts),
                    critical_alerts=critical,
                    last_seen=max((g.last_seen for g in gws), default=None),
                )
            )
        return out

    def _history(
        self, session: Session, site: str, kind: SubjectKind, subject: str, days: int
    ) -> tuple[SampleView, ...]:
        since = int(self._clock.now()) - max(1, min(days, 60)) * rules.DAY_S
        rows = session.scalars(
            select(HealthSample)
            .where(
                HealthSample.site == site,
                HealthSample.subject == subject,
                HealthSample.subject_kind == kind,
                HealthSample.at >= since,
            )
            .order_by(HealthSample.at)
        )
        return tuple(
            SampleView(
                s.at, s.battery_pct, s.clock_offset_s, s.rssi_dbm, s.last_sync_at, s.outbox_depth
            )
            for s in rows
        )


def _visible(site: str, scope: Collection[str] | None) -> None:
    if scope is not None and site not in scope:
        raise NotFoundError(f"no site {site!r}")
