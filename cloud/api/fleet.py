"""The fleet's JSON API: sites at a glance, gateway and device detail (twins, health
history), the alerts inbox, commands with their replies, firmware images and rollouts.

Who may do what (HTTP Basic, like the rest of the API):

- ``ops``: everything;
- ``technician``: read every site, acknowledge alerts, send commands except ``unlock`` and
  ``firmware-update`` (see :mod:`cloud.fleet.commands`), list images and rollouts;
- ``manager`` (a facility manager): read only, and only the sites of its departments;
  another department's site answers 404 as if it did not exist;
- ``clinic``: nothing here.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from starlette.concurrency import run_in_threadpool

from cloud.api.deps import api_user
from cloud.api.params import JSON_INTEGER, BodyId, Days, Limit, RowId, SlugPath
from cloud.core.models import Role
from cloud.core.views import UserView
from cloud.fleet.commands import CommandRequest
from cloud.fleet.kinds import DeviceKind
from cloud.fleet.rollouts import RolloutRequest
from cloud.fleet.runtime import Fleet
from cloud.fleet.services import FleetServices
from cloud.fleet.views import (
    AlertView,
    AuditView,
    CommandView,
    DepartmentView,
    DeviceDetail,
    DeviceView,
    FirmwareView,
    GatewayDetail,
    RolloutView,
    SiteDetail,
    SiteSummary,
)
from protocol.messages import FIRMWARE_IMAGE_MAX

router = APIRouter(prefix="/api/fleet", tags=["fleet"])


def fleet_services(request: Request) -> FleetServices:
    """The process's fleet services (built in ``create_app``)."""
    runtime: Fleet = request.app.state.fleet
    return runtime.services


FleetDep = Annotated[FleetServices, Depends(fleet_services)]
Reader = Annotated[UserView, Depends(api_user(Role.OPS, Role.TECHNICIAN, Role.MANAGER))]
Actor = Annotated[UserView, Depends(api_user(Role.OPS, Role.TECHNICIAN))]
OpsUser = Annotated[UserView, Depends(api_user(Role.OPS))]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SiteIn(_In):
    name: str | None = Field(default=None, max_length=200)
    department: str | None = Field(default=None, max_length=40)
    ring: Annotated[int, Field(ge=0, le=2), JSON_INTEGER] | None = Field(
        default=None, description="default rollout ring"
    )


class DepartmentIn(_In):
    name: str = Field(min_length=1, max_length=200)


class DeviceIn(_In):
    gateway: str = Field(max_length=40)
    kind: DeviceKind
    model: str | None = Field(default=None, max_length=32)
    config: dict[str, Any] | None = None


class CommandIn(_In):
    site: str = Field(max_length=40)
    gateway: str = Field(max_length=40)
    verb: str = Field(max_length=32)
    data: dict[str, Any] = Field(default_factory=dict, description="the verb's arguments")
    reason: str | None = Field(default=None, max_length=200, description="needed for unlock")
    ttl_s: Annotated[int, Field(ge=1, le=86400), JSON_INTEGER] | None = Field(
        default=None, description="default 60 s"
    )
    firmware_image_id: BodyId | None = None


class RolloutIn(_In):
    kind: str = Field(description="firmware or config")
    name: str = Field(min_length=1, max_length=200)
    firmware_image_id: BodyId | None = None
    config: dict[str, Any] | None = Field(default=None, description="agent config fields")
    rings: list[list[str]] | None = Field(
        default=None,
        description="sites of the first rings (the rest follow); null: each site's ring",
    )
    soak_s: Annotated[int, Field(ge=0, le=7 * 86400), JSON_INTEGER] | None = None
    auto_advance: StrictBool = True


# -------------------------------------------------------------------------- sites


@router.get("/sites")
def sites(fleet: FleetDep, user: Reader) -> list[SiteSummary]:
    """Every site the caller may see, at a glance: status, devices by health, alerts."""
    return fleet.sites.overview(fleet.sites.scope(user))


@router.get("/sites/{site}")
def site(site: SlugPath, fleet: FleetDep, user: Reader) -> SiteDetail:
    """One site: its gateways, devices with their health, open alerts."""
    return fleet.sites.site(site, fleet.sites.scope(user))


@router.put("/sites/{site}")
def put_site(site: SlugPath, body: SiteIn, fleet: FleetDep, user: OpsUser) -> SiteSummary:
    """Create a site, or set its name, owning department or default rollout ring (ops)."""
    return fleet.sites.put_site(
        site, actor=user.username, name=body.name, department=body.department, ring=body.ring
    )


@router.get("/sites/{site}/gateways/{gateway}")
def gateway(
    site: SlugPath, gateway: SlugPath, fleet: FleetDep, user: Reader, days: Days = 7
) -> GatewayDetail:
    """A gateway: availability, health, the config twin (desired vs reported and since
    when they differ), its devices, open alerts, outbox history, recent commands."""
    return fleet.sites.gateway(site, gateway, fleet.sites.scope(user), days=days)


@router.put("/sites/{site}/gateways/{gateway}/config")
def put_config(
    site: SlugPath,
    gateway: SlugPath,
    fleet: FleetDep,
    user: OpsUser,
    changes: Annotated[dict[str, Any], Body()],
) -> dict[str, Any]:
    """Change fields of the gateway's desired agent config (a new version, published
    retained on its ``config`` topic at once); null resets a field to the site file's."""
    return fleet.twins.set_config(site, gateway, changes, user.username).model_dump(mode="json")


@router.get("/sites/{site}/devices/{device_id}")
def device(
    site: SlugPath, device_id: SlugPath, fleet: FleetDep, user: Reader, days: Days = 7
) -> DeviceDetail:
    """A device: health, battery forecast, the firmware twin, open alerts, history."""
    return fleet.sites.device(site, device_id, fleet.sites.scope(user), days=days)


@router.put("/sites/{site}/devices/{device_id}")
def put_device(
    site: SlugPath, device_id: SlugPath, body: DeviceIn, fleet: FleetDep, user: OpsUser
) -> DeviceView:
    """Register a device or set its model (firmware rollouts target a model) (ops)."""
    return fleet.sites.put_device(
        site,
        device_id,
        actor=user.username,
        gateway=body.gateway,
        kind=body.kind,
        model=body.model,
        config=body.config,
    )


@router.get("/departments")
def departments(fleet: FleetDep, _user: OpsUser) -> list[DepartmentView]:
    return fleet.sites.departments()


@router.put("/departments/{slug}")
def put_department(slug: str, body: DepartmentIn, fleet: FleetDep, user: OpsUser) -> DepartmentView:
    """Create or rename a city department (ops)."""
    return fleet.sites.put_department(slug, body.name, user.username)


@router.put("/departments/{slug}/members/{username}")
def add_member(slug: str, username: str, fleet: FleetDep, user: OpsUser) -> DepartmentView:
    """Let a facility manager see the department's sites (ops)."""
    return fleet.sites.add_member(slug, username, user.username)


@router.delete("/departments/{slug}/members/{username}")
def remove_member(slug: str, username: str, fleet: FleetDep, user: OpsUser) -> DepartmentView:
    """A facility manager or clinic staff member no longer sees the department's sites
    (ops); audited."""
    return fleet.sites.remove_member(slug, username, user.username)


# ------------------------------------------------------------------------- alerts


@router.get("/alerts")
def alerts(
    fleet: FleetDep,
    user: Reader,
    *,
    state: str = "open",
    site: str | None = None,
    kind: str | None = None,
    severity: str | None = None,
    limit: Limit = 100,
) -> list[AlertView]:
    """The alerts inbox, newest first: ``state`` open (default), unacknowledged, resolved
    or all; filter by site, kind, severity."""
    return fleet.alerts.alerts(
        fleet.sites.scope(user),
        state=state,
        site=site,
        kind=kind,
        severity=severity,
        limit=min(max(limit, 1), 1000),
    )


@router.get("/alerts/{alert_id}")
def alert(alert_id: RowId, fleet: FleetDep, user: Reader) -> AlertView:
    return fleet.alerts.alert(alert_id, fleet.sites.scope(user))


@router.post("/alerts/{alert_id}/ack")
def acknowledge(alert_id: RowId, fleet: FleetDep, user: Actor) -> AlertView:
    """Someone is on it (ops, technician); it still resolves by itself."""
    return fleet.alerts.acknowledge(alert_id, user, fleet.sites.scope(user))


# ----------------------------------------------------------------------- commands


@router.post("/commands", status_code=201)
def send_command(body: CommandIn, fleet: FleetDep, user: Actor) -> CommandView:
    """Send a command to a gateway; the reply (or the expiry) shows on its detail."""
    return fleet.commands.create(
        CommandRequest(
            site=body.site,
            gateway=body.gateway,
            verb=body.verb,
            data=body.data,
            reason=body.reason,
            ttl_s=body.ttl_s,
            firmware_image_id=body.firmware_image_id,
        ),
        user,
    )


@router.get("/commands")
def commands(
    fleet: FleetDep,
    user: Reader,
    *,
    site: str | None = None,
    gateway: str | None = None,
    status: str | None = None,
    limit: Limit = 100,
) -> list[CommandView]:
    """Commands, newest first."""
    return fleet.commands.commands(
        fleet.sites.scope(user),
        site=site,
        gateway=gateway,
        status=status,
        limit=min(max(limit, 1), 1000),
    )


@router.get("/commands/{transaction}")
def command(transaction: str, fleet: FleetDep, user: Reader) -> CommandView:
    """A command with its reply, or ``expired`` with no ``replied_at`` when none came."""
    return fleet.commands.command(transaction, fleet.sites.scope(user))


# ----------------------------------------------------------------------- rollouts


@router.post("/firmware", status_code=201)
async def upload_firmware(request: Request, fleet: FleetDep, user: OpsUser) -> FirmwareView:
    """Upload a signed image (the raw bytes of ``denen release sign``'s output) (ops)."""
    data = await request.body()
    if len(data) > FIRMWARE_IMAGE_MAX:
        data = data[: FIRMWARE_IMAGE_MAX + 1]  # refused by the service, with the limit
    return await run_in_threadpool(fleet.firmware.upload, data, user.username)


@router.get("/firmware")
def firmware(fleet: FleetDep, _user: Actor) -> list[FirmwareView]:
    return fleet.firmware.images()


@router.post("/rollouts", status_code=201)
def create_rollout(body: RolloutIn, fleet: FleetDep, user: OpsUser) -> RolloutView:
    """Start a rollout: ring 0 is sent at once (ops)."""
    return fleet.rollouts.create(
        RolloutRequest(
            kind=body.kind,
            name=body.name,
            firmware_image_id=body.firmware_image_id,
            config=body.config,
            rings=body.rings,
            soak_s=body.soak_s,
            auto_advance=body.auto_advance,
        ),
        user,
    )


@router.get("/rollouts")
def rollouts(fleet: FleetDep, _user: Actor) -> list[RolloutView]:
    return fleet.rollouts.rollouts()


@router.get("/rollouts/{rollout_id}")
def rollout(rollout_id: RowId, fleet: FleetDep, _user: Actor) -> RolloutView:
    """A rollout with the state of every ring and target."""
    return fleet.rollouts.rollout(rollout_id)


@router.post("/rollouts/{rollout_id}/advance")
def advance(rollout_id: RowId, fleet: FleetDep, user: OpsUser) -> RolloutView:
    """Start the next ring once the current one passed its gate (ops)."""
    return fleet.rollouts.advance(rollout_id, user)


@router.post("/rollouts/{rollout_id}/pause")
def pause(rollout_id: RowId, fleet: FleetDep, user: OpsUser) -> RolloutView:
    return fleet.rollouts.pause(rollout_id, user)


@router.post("/rollouts/{rollout_id}/resume")
def resume(rollout_id: RowId, fleet: FleetDep, user: OpsUser) -> RolloutView:
    return fleet.rollouts.resume(rollout_id, user)


@router.get("/audit")
def audit_log(
    fleet: FleetDep, _user: OpsUser, site: str | None = None, limit: Limit = 200
) -> list[AuditView]:
    """The fleet audit log, newest first (ops)."""
    return fleet.audit.entries(None, site=site, limit=min(max(limit, 1), 1000))
