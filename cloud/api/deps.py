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


def services(request: Request) -> Services:
    """The process's services (built in ``create_app``)."""
    svc: Services = request.app.state.services
    return svc


ServicesDep = Annotated[Services, Depends(services)]


BASIC = HTTPBasic(
    auto_error=False,
    description="a dashboard user's name and password; each route says which roles it needs",
)
"""Declares the ``basic`` security scheme in the schema, so generated clients send it and
the schema's error answers (401, 403, 429) are derived for these routes
(:mod:`cloud.api.contract`); the credentials themselves are checked below."""


def api_user(*roles: Role) -> Callable[..., UserView]:
    """A dependency: the HTTP Basic user, who must hold one of ``roles``."""
    wanted = frozenset(roles)

    def dependency(
        request: Request,
        _declared: Annotated[HTTPBasicCredentials | None, Security(BASIC)] = None,
    ) -> UserView:
        users = services(request).users
        return check_role(user_from_basic(users, request.headers.get("authorization")), wanted)

    return dependency


Manager = Annotated[UserView, Depends(api_user(Role.MANAGER))]
Ops = Annotated[UserView, Depends(api_user(Role.OPS))]
Staff = Annotated[UserView, Depends(api_user(Role.MANAGER, Role.OPS))]
