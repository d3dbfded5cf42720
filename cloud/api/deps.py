"""What routes get injected: the services and the calling user."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from cloud.core import addresses
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


def client_address(request: Request) -> str:
    """The caller's address (:mod:`cloud.core.addresses`: behind a trusted proxy, what it
    appended to X-Forwarded-For)."""
    settings: CloudSettings = request.app.state.settings
    peer = request.client.host if request.client else None
    forwarded = request.headers.get("x-forwarded-for")
    return addresses.client_address(peer, forwarded, settings.trusted_proxies)


def request_scheme(request: Request) -> str:
    """``https`` or ``http`` as the browser sees it: X-Forwarded-Proto from a trusted
    proxy, else the request's own scheme."""
    settings: CloudSettings = request.app.state.settings
    peer = request.client.host if request.client else None
    proto = request.headers.get("x-forwarded-proto")
    return addresses.client_scheme(peer, request.url.scheme, proto, settings.trusted_proxies)


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
