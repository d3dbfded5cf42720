"""Clinic sites: their departments (number prefix, rooms), walk-in department and which
departments each call-number display shows."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from cloud.clinic.models import Clinic, Department, DepartmentRoom
from cloud.clinic.publish import ClinicChanged
from cloud.core.bus import ChangeBus
from cloud.errors import ConflictError, InvalidRequestError, NotFoundError
from cloud.fleet.site_rows import ensure_site
from protocol import display_wire as dw
from protocol.ids import is_slug
from protocol.messages import PREFIX_PATTERN
from protocol.queue_rules import DEFAULT_SERVICE_S, DEFAULT_TOLERANCE_S

_PREFIX = re.compile(PREFIX_PATTERN)


@dataclass(frozen=True, slots=True)
class DepartmentSpec:
    """A department as set up: ``slug`` names it on the wire, ``prefix`` its numbers."""

    slug: str
    name: str
    prefix: str
    rooms: tuple[str, ...]
    tolerance_s: int = int(DEFAULT_TOLERANCE_S)
    default_service_s: int = int(DEFAULT_SERVICE_S)
    notify_when_left: int = 3


@dataclass(frozen=True, slots=True)
class ClinicView:
    site: str
    gateway: str
    name: str
    walk_in_department: str | None
    departments: tuple[DepartmentSpec, ...]
    displays: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _check(
    site: str,
    gateway: str,
    departments: Sequence[DepartmentSpec],
    walk_in: str | None,
    displays: Mapping[str, Sequence[str]],
) -> None:
    for kind, value in (("site", site), ("gateway", gateway)):
        if not is_slug(value):
            raise InvalidRequestError(f"{kind} {value!r} is not a slug [a-z0-9-]{{1,40}}")
    slugs = [d.slug for d in departments]
    if not departments:
        raise InvalidRequestError("a clinic needs at least one department")
    for d in departments:
        if not is_slug(d.slug):
            raise InvalidRequestError(f"department {d.slug!r} is not a slug [a-z0-9-]{{1,40}}")
        if not _PREFIX.fullmatch(d.prefix):
            raise InvalidRequestError(f"prefix {d.prefix!r} of {d.slug} is not 1-3 capitals")
        if not d.name.strip() or len(d.name) > 60:
            raise InvalidRequestError(f"the name of {d.slug} must be 1-60 characters")
        if not d.rooms:
            raise InvalidRequestError(f"department {d.slug} needs at least one room")
        for room in d.rooms:
            if not room or len(room.encode()) > dw.ROOM_MAX_BYTES or not room.isprintable():
                raise InvalidRequestError(
                    f"room {room!r} must be 1-{dw.ROOM_MAX_BYTES} bytes of printable text"
                )
        if d.tolerance_s < 0 or d.default_service_s <= 0 or d.notify_when_left < 0:
            raise InvalidRequestError(f"{d.slug}: tolerance, service time and notice are >= 0")
    for kind, values in (
        ("department", slugs),
        ("prefix", [d.prefix for d in departments]),
        ("room", [r for d in departments for r in d.rooms]),
    ):
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise InvalidRequestError(f"each {kind} must be unique in a site: {', '.join(twice)}")
    if walk_in is not None and walk_in not in slugs:
        raise InvalidRequestError(f"walk-in department {walk_in!r} is not one of {slugs}")
    for display, shown in displays.items():
        if not is_slug(display):
            raise InvalidRequestError(f"display {display!r} is not a slug [a-z0-9-]{{1,40}}")
        unknown = [s for s in shown if s not in slugs]
        if unknown:
            raise InvalidRequestError(f"display {display} shows unknown departments {unknown}")


def create_clinic(
    session: Session,
    *,
    site: str,
    gateway: str,
    name: str,
    departments: Sequence[DepartmentSpec],
    walk_in_department: str | None,
    displays: Mapping[str, Sequence[str]],
    now: int,
) -> Clinic:
    """Add a clinic site inside the caller's transaction (checked first; flushed)."""
    _check(site, gateway, departments, walk_in_department, displays)
    clinic = Clinic(
        site=site,
        gateway=gateway,
        name=name,
        walk_in_department=walk_in_department,
        displays=[{"display_id": d, "departments": list(s)} for d, s in displays.items()],
        state_version=0,
        display_version=0,
        created_at=now,
    )
    session.add(clinic)
    session.flush()
    # on the fleet's pages before its gateway reports
    ensure_site(session, site, now, name=clinic.name)
    for spec in departments:
        department = Department(
            clinic_id=clinic.id,
            slug=spec.slug,
            name=spec.name,
            prefix=spec.prefix,
            tolerance_s=spec.tolerance_s,
            default_service_s=spec.default_service_s,
            notify_when_left=spec.notify_when_left,
        )
        session.add(department)
        session.flush()
        session.add_all(
            DepartmentRoom(clinic_id=clinic.id, department_id=department.id, label=room)
            for room in spec.rooms
        )
    session.flush()
    return clinic


def _view(clinic: Clinic) -> ClinicView:
    return ClinicView(
        site=clinic.site,
        gateway=clinic.gateway,
        name=clinic.name,
        walk_in_department=clinic.walk_in_department,
        departments=tuple(
            DepartmentSpec(
                d.slug,
                d.name,
                d.prefix,
                tuple(r.label for r in d.rooms),
                d.tolerance_s,
                d.default_service_s,
                d.notify_when_left,
            )
            for d in clinic.departments
        ),
        displays={str(d["display_id"]): tuple(d.get("departments", [])) for d in clinic.displays},
    )


class ClinicSiteService:
    """Create and read clinic sites."""

    def __init__(self, sessions: sessionmaker[Session], bus: ChangeBus) -> None:
        self._sessions = sessions
        self._bus = bus

    def create(
        self,
        *,
        site: str,
        gateway: str,
        name: str,
        departments: Sequence[DepartmentSpec],
        walk_in_department: str | None,
        displays: Mapping[str, Sequence[str]],
        now: int,
    ) -> ClinicView:
        """A new clinic site (ConflictError when the site has one)."""
        try:
            with self._sessions.begin() as session:
                clinic = create_clinic(
                    session,
                    site=site,
                    gateway=gateway,
                    name=name,
                    departments=departments,
                    walk_in_department=walk_in_department,
                    displays=displays,
                    now=now,
                )
                session.refresh(clinic, ["departments"])
                view = _view(clinic)
        except IntegrityError:
            raise ConflictError(f"site {site} already has a clinic") from None
        self._bus.publish(ClinicChanged(site, gateway))
        return view

    def get(self, site: str) -> ClinicView:
        """One clinic site."""
        with self._sessions() as session:
            clinic = session.scalars(
                select(Clinic)
                .where(Clinic.site == site)
                .options(selectinload(Clinic.departments).selectinload(Department.rooms))
            ).one_or_none()
            if clinic is None:
                raise NotFoundError(f"there is no clinic at site {site!r}")
            return _view(clinic)

    def all(self, sites: Collection[str] | None = None) -> list[ClinicView]:
        """Every clinic site, or those at ``sites`` (a user's scope:
        :mod:`cloud.core.scope`)."""
        query = select(Clinic) if sites is None else select(Clinic).where(Clinic.site.in_(sites))
        with self._sessions() as session:
            clinics = session.scalars(
                query.order_by(Clinic.site).options(
                    selectinload(Clinic.departments).selectinload(Department.rooms)
                )
            ).all()
            return [_view(c) for c in clinics]
