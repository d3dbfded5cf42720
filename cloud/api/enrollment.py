"""Gateway enrollment and revocation.

``POST /api/enrollment-tokens`` (ops) makes a one-time token; ``POST /api/enroll`` is
public because the token is the credential; ``GET /api/enroll/ca`` is public too: the Pi
checks that CA against the pin in its token before it sends the token;
``POST /api/gateways/{site}/{gw}/revoke`` (ops) shuts a gateway out of the broker.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, ConfigDict, Field

from cloud.api.contract import error_responses
from cloud.api.deps import Ops, ServicesDep
from cloud.api.params import SlugPath
from cloud.settings import CloudSettings
from protocol.messages import SLUG_PATTERN

router = APIRouter(prefix="/api", tags=["enrollment"])


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenIn(_In):
    site: str = Field(pattern=SLUG_PATTERN)
    gateway: str = Field(pattern=SLUG_PATTERN)


class TokenOut(BaseModel):
    token: str = Field(description="shown once; give it to the technician installing the Pi")
    site: str
    gateway: str
    expires_at: int = Field(description="UTC epoch seconds; the token works once before then")


class EnrollIn(_In):
    token: str = Field(min_length=8, max_length=200)
    csr_pem: str = Field(min_length=1, max_length=20_000)


class EnrollOut(BaseModel):
    certificate_pem: str
    ca_pem: str
    site: str
    gateway: str
    mqtt_host: str
    mqtt_port: int


class CaOut(BaseModel):
    ca_pem: str = Field(description="the deployment CA; its SHA-256 must match the token's pin")


class RevokedOut(BaseModel):
    site: str
    gateway: str
    serials: list[str]
    broker_reloaded: bool = Field(
        description="false: send the broker SIGHUP yourself for the CRL and ACL to apply"
    )
    connection_closed: bool = Field(
        description="false: the cloud could not reach the broker to close the gateway's "
        "open connection (it can do nothing once the broker reloaded, but stays open)"
    )


@router.post(
    "/enrollment-tokens", status_code=status.HTTP_201_CREATED, responses=error_responses(503)
)
def create_token(body: TokenIn, svc: ServicesDep, user: Ops) -> TokenOut:
    """A one-time enrollment token for a site's gateway, valid 24 hours (ops)."""
    issued = svc.enrollment.create_token(body.site, body.gateway, user.username)
    return TokenOut(
        token=issued.token, site=issued.site, gateway=issued.gateway, expires_at=issued.expires_at
    )


@router.get("/enroll/ca")
def enroll_ca(svc: ServicesDep) -> CaOut:
    """The CA certificate a Pi checks against its token before enrolling (public)."""
    return CaOut(ca_pem=svc.enrollment.ca_pem())


@router.post("/enroll", responses=error_responses(403, 503))
def enroll(body: EnrollIn, svc: ServicesDep, request: Request) -> EnrollOut:
    """Spend a token: sign the Pi's CSR and say where the broker is (public)."""
    settings: CloudSettings = request.app.state.settings
    done = svc.enrollment.enroll(body.token, body.csr_pem)
    return EnrollOut(
        certificate_pem=done.certificate_pem,
        ca_pem=done.ca_pem,
        site=done.site,
        gateway=done.gateway,
        mqtt_host=settings.enroll_mqtt_host or settings.mqtt_host,
        mqtt_port=settings.enroll_mqtt_port,
    )


@router.post("/gateways/{site}/{gateway}/revoke", responses=error_responses(503))
def revoke(site: SlugPath, gateway: SlugPath, svc: ServicesDep, _user: Ops) -> RevokedOut:
    """Revoke the gateway's certificates, write the CRL and ACL, reload the broker (ops)."""
    done = svc.enrollment.revoke(site, gateway)
    return RevokedOut(
        site=done.site,
        gateway=done.gateway,
        serials=done.serials,
        broker_reloaded=done.broker_reloaded,
        connection_closed=done.connection_closed,
    )
