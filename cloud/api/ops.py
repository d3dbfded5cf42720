"""Operations: health, lock audit logs, the demo mail outbox."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from cloud.api.deps import Ops, ServicesDep, Staff
from cloud.api.params import Limit, SlugPath
from cloud.api.schemas import AuditOut, Health, LockSyncOut, MailOut
from cloud.localtime import format_local
from cloud.settings import CloudSettings

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
def healthz(request: Request) -> JSONResponse:
    """200 when the DB answers and (if enabled) MQTT is connected, else 503."""
    sessions: sessionmaker[Session] = request.app.state.sessions
    try:
        with sessions() as session:
            session.execute(text("SELECT 1"))
        db = "ok"
    except SQLAlchemyError as exc:
        db = f"error: {type(exc).__name__}"
    bridge = request.app.state.bridge
    mqtt = "disabled" if bridge is None else ("connected" if bridge.connected else "disconnected")
    ok = db == "ok" and mqtt != "disconnected"
    body = Health(ok=ok, db=db, mqtt=mqtt)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/api/locks/{lock_id}/audit")
def lock_audit(
    lock_id: SlugPath, svc: ServicesDep, user: Staff, limit: Limit = 200
) -> list[AuditOut]:
    """A lock's events, newest first, with the reservation name behind each grant (a
    manager: of its departments' facilities)."""
    svc.scope.require_lock(user, lock_id)
    svc.facilities.lock(lock_id)  # 404 for an unknown lock
    return [
        AuditOut(
            lock_id=e.lock_id,
            seq=e.seq,
            lock_ts=e.lock_ts,
            kind=e.kind,
            grant_id=e.grant_id,
            slot=e.slot,
            value=e.value,
            received_at=e.received_at,
            who=e.reservation_name,
            offline=e.offline,
            boot=e.boot,
        )
        for e in svc.audit.events(lock_id, min(max(limit, 1), 1000))
    ]


@router.get("/api/locks/{lock_id}/sync")
def lock_sync(lock_id: SlugPath, request: Request, svc: ServicesDep, user: Staff) -> LockSyncOut:
    """What the site's agent last said about the lock: the snapshot version and grants it
    holds, its last and next sync, its clock drift, its revocation list (manager of its
    facility's department, or ops)."""
    svc.scope.require_lock(user, lock_id)
    v = svc.sync_status.lock(lock_id)
    settings: CloudSettings = request.app.state.settings
    zone = settings.zone
    return LockSyncOut(
        lock_id=v.lock_id,
        name=v.name,
        gateway_state=v.gateway_state,
        gateway_last_seen=v.gateway_last_seen,
        applied_version=v.applied_version,
        grant_ids=list(v.grant_ids),
        deferred=list(v.deferred),
        loaded_reason=v.reason,
        clock_offset_s=v.clock_offset_s,
        clock_set=v.clock_set,
        revocation_error=v.revocation_error,
        applied_received_at=v.applied_received_at,
        reachable=v.reachable,
        last_sync_at=v.last_sync_at,
        next_sync_at=v.next_sync_at,
        clock_drift_s=v.clock_drift_s,
        telemetry_received_at=v.telemetry_received_at,
        revoked_offline=v.revoked_offline,
        last_sync_local=None if v.last_sync_at is None else format_local(v.last_sync_at, zone),
        next_sync_local=None if v.next_sync_at is None else format_local(v.next_sync_at, zone),
    )


@router.get("/api/mail")
def mail(svc: ServicesDep, _user: Ops) -> list[MailOut]:
    """The demo mail outbox, newest first (ops)."""
    return [
        MailOut(id=m.id, to=m.to, subject=m.subject, body=m.body, created_at=m.created_at)
        for m in svc.mail.messages()
    ]
