"""What routes get injected: the services and the calling user."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from cloud.core.auth import check_role, user_from_basic
from cloud.core.models import Role
from cloud.core.views import UserView
from cloud.services import Services
from cloud.settings import CloudSettings


def services(request: Request) -> Services:
    """The process's services (built in ``create_app``)."""
    svc: Services = request.app.state.services
    return svc


ServicesDep = Annotated[Services, Depends(services)]


def _from_trusted_proxy(request: Request) -> bool:
    settings: CloudSettings = request.app.state.settings
    peer = request.client.host if request.client else ""
    return peer in settings.trusted_proxy_ips


def client_address(request: Request) -> str:
    """The caller's address, for counting failed logins: the peer's, or behind a trusted
    proxy the last address that proxy appended to X-Forwarded-For (the ones before it are
    the client's word, free to forge)."""
    peer = request.client.host if request.client else "unknown"
    if _from_trusted_proxy(request):
        forwarded = request.headers.get("x-forwarded-for", "").split(",")[-1].strip()
        return forwarded or peer
    return peer


def request_scheme(request: Request) -> str:
    """``https`` or ``http`` as the browser sees it: X-Forwarded-Proto from a trusted
    proxy, else the request's own scheme."""
    if _from_trusted_proxy(request):
        proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        if proto in ("http", "https"):
            return proto
    return request.url.scheme


BASIC = HTTPBasic(
    auto_error=False,
    description=(
        "a user's name and an API token (a facility manager may use the password); "
        "each route says which roles it needs"
    ),
)
"""Declares the ``basic`` security scheme in the schema, so generated clients send it and
the schema's error answers (401, 403, 429) are derived for these routes
(:mod:`cloud.api.contract`); the credentials themselves are checked below."""


def api_user(*roles: Role) -> Callable[..., UserView]:
    """A dependency: the HTTP Basic user (password, or API token), who must hold one of
    ``roles``."""
    wanted = frozenset(roles)

    def dependency(
        request: Request,
        _declared: Annotated[HTTPBasicCredentials | None, Security(BASIC)] = None,
    ) -> UserView:
        svc = services(request)
        header = request.headers.get("authorization")
        user = user_from_basic(svc.users, svc.api_tokens, header, client_address(request))
        return check_role(user, wanted)

    return dependency


Manager = Annotated[UserView, Depends(api_user(Role.MANAGER))]
Ops = Annotated[UserView, Depends(api_user(Role.OPS))]
Staff = Annotated[UserView, Depends(api_user(Role.MANAGER, Role.OPS))]
