"""The composition of the cloud's web process: ``create_app(settings, clock)``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from cloud.api import (
    clinic,
    contract,
    enrollment,
    facilities,
    facility_rules,
    fleet,
    notifications,
    ops,
    personal_data,
    reservations,
)
from cloud.clinic.jobs import ClinicJobs
from cloud.clinic.link import ClinicLink, add_clinic_routes
from cloud.clinic.publish import ClinicChanged
from cloud.core.auth import AuthError
from cloud.core.bus import ChangeBus
from cloud.core.personal_data import RetentionJobs
from cloud.dashboard import (
    account,
    announcement_pages,
    clinic_figures_pages,
    clinic_pages,
    fleet_pages,
    notifications_pages,
    personal_data_pages,
)
from cloud.dashboard import booking as booking_pages
from cloud.dashboard import facility_admin as facility_pages
from cloud.dashboard import manage as manage_pages
from cloud.dashboard import routes as pages
from cloud.dashboard.csrf import csrf_guard
from cloud.db import make_engine, make_sessionmaker, migrate
from cloud.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    RefusedError,
    TooManyAttemptsError,
    UnavailableError,
)
from cloud.fleet.renewal import RenewalLink
from cloud.fleet.runtime import build_fleet
from cloud.gym.access import AccessChanged
from cloud.gym.link import AccessLink, add_gym_routes
from cloud.gym.lock_keys import LockKeyService, load_pairing_key
from cloud.gym.notifications_jobs import NotificationJobs
from cloud.gym.pairing_link import PairingLink
from cloud.metrics import (
    CloudCollector,
    HttpMetrics,
    TracingMiddleware,
    gateway_states,
    metrics_router,
    new_registry,
)
from cloud.mqtt_bridge import MqttBridge
from cloud.mqtt_routes import Outlet, Routes
from cloud.services import build_services
from cloud.settings import CloudSettings
from protocol.clock import Clock, SystemClock
from protocol.errors import DenenError
from protocol.queue_rules import QueueRequestError, QueueRuleError, UnknownTicketError

_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (UnknownTicketError, 404),
    (QueueRuleError, 409),
    (QueueRequestError, 400),
    (NotFoundError, 404),
    (ConflictError, 409),
    (InvalidRequestError, 400),
    (RefusedError, 403),
    (UnavailableError, 503),
    (TooManyAttemptsError, 429),
)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith(("/api/", "/healthz"))


def _status_of(exc: Exception) -> int:
    if isinstance(exc, AuthError):
        return exc.status
    return next((code for kind, code in _STATUS if isinstance(exc, kind)), 400)


async def _domain_error(request: Request, exc: Exception) -> Response:
    code = _status_of(exc)
    if not _is_api(request):
        if isinstance(exc, AuthError):
            return pages.auth_error_page(request, exc)
        return pages.render(request, "error.html", status_code=code, error=str(exc))
    headers = {"WWW-Authenticate": 'Basic realm="denen"'} if code == 401 else None
    return JSONResponse({"detail": str(exc)}, status_code=code, headers=headers)


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    detail = "; ".join(parts) + "; fix these fields and send again (see /docs)"
    return JSONResponse({"detail": detail}, status_code=422)


def create_app(settings: CloudSettings, clock: Clock | None = None) -> FastAPI:  # noqa: PLR0915 - the one composition root wires every subsystem
    """The FastAPI app; its lifespan migrates the DB and runs the MQTT bridge, the
    notification jobs (mail delivery, reminders, no-shows, surveys), the clinic's and the
    fleet's periodic passes, and the personal-data retention pass."""
    clock = clock or SystemClock()
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    bus = ChangeBus()  # "this changed, publish it": services publish, the MQTT side listens
    services = build_services(sessions, clock, settings, bus)
    clinic_services = services.clinic
    fleet_runtime = build_fleet(services.fleet, clock, settings, bus)
    # the MQTT side: each domain's routes in and outlet out; the bridge only connects,
    # batches and acknowledges
    access_link = AccessLink(services.access, clock)
    clinic_link = ClinicLink(clinic_services.publisher, clock)
    bus.subscribe(AccessChanged, access_link.access_changed)
    bus.subscribe(ClinicChanged, clinic_link.clinic_changed)
    routes = Routes()
    fleet_runtime.link.add_routes(routes)
    renewal_link = RenewalLink(services.enrollment, clock)
    renewal_link.add_routes(routes)
    add_gym_routes(routes, services.events, services.lock_reports)
    add_clinic_routes(routes, clinic_services.agent_sync)
    outlets: tuple[Outlet, ...] = (access_link, clinic_link, fleet_runtime.link, renewal_link)
    if settings.pairing_key_path is not None:  # lock keys straight from pairings
        lock_keys = LockKeyService(
            sessions,
            clock,
            settings,
            bus,
            key=load_pairing_key(settings.pairing_key_path),
            refused=services.events.refused,
        )
        pairing_link = PairingLink(lock_keys, clock)
        pairing_link.add_routes(routes)
        outlets += (pairing_link,)
    bridge = MqttBridge(settings, routes, outlets) if settings.mqtt_enabled else None
    jobs = NotificationJobs(
        settings, clock, services.notifications, services.mail_delivery, services.confirmations
    )
    clinic_jobs = ClinicJobs(
        settings,
        clock,
        clinic_services.announcements,
        clinic_services.publisher,
        bus,
    )

    retention = RetentionJobs(
        sessions, clock, settings, (services.retention, clinic_services.retention)
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(migrate, settings.database_url, settings.secret_key)
        if bridge is not None:
            await bridge.start()
        await jobs.start()
        await clinic_jobs.start()
        await fleet_runtime.jobs.start()
        await retention.start()
        try:
            yield
        finally:
            await retention.stop()
            await fleet_runtime.jobs.stop()
            await clinic_jobs.stop()
            await jobs.stop()
            if bridge is not None:
                await bridge.stop()
            engine.dispose()

    # every route's state changes pass the one cross-site check (cloud/dashboard/csrf.py)
    app = FastAPI(
        title="Denen cloud",
        version="0.1.0",
        lifespan=lifespan,
        dependencies=[Depends(csrf_guard)],
    )
    app.state.settings = settings
    app.state.clock = clock
    app.state.engine = engine
    app.state.sessions = sessions
    app.state.services = services
    app.state.bridge = bridge
    app.state.renewal = renewal_link
    app.state.jobs = jobs
    app.state.clinic = clinic_services
    app.state.clinic_jobs = clinic_jobs
    app.state.retention = retention
    app.state.fleet = fleet_runtime
    app.state.bus = bus
    app.state.access_link = access_link
    app.state.clinic_link = clinic_link
    registry = new_registry()
    app.state.metrics_registry = registry
    registry.register(
        CloudCollector(
            lambda: None if bridge is None else bridge.stats,
            lambda: gateway_states(sessions),
            lambda: fleet_runtime.link.stats,
            fleet_runtime.services.alerts.open_counts,
            lambda: access_link.stats.snapshots_published,
        )
    )
    app.add_middleware(TracingMiddleware, metrics=HttpMetrics(registry))
    app.include_router(metrics_router(registry, settings.metrics_token))
    app.add_exception_handler(DenenError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    contract.install(app)
    for router in (
        ops.router,
        facilities.router,
        facility_rules.router,
        reservations.router,
        enrollment.router,
        pages.router,
        account.router,
        booking_pages.router,
        manage_pages.router,
        facility_pages.router,
        notifications.router,
        notifications_pages.router,
        clinic.router,
        clinic_pages.router,
        clinic_figures_pages.router,
        announcement_pages.router,
        fleet_pages.router,
        fleet.router,
        personal_data.router,
        personal_data_pages.router,
    ):
        app.include_router(router)
    return app
