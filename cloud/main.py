"""``denen-cloud``: serve the cloud, create users, register facilities and locks."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from cloud.bootstrap import seed_clinic, seed_demo
from cloud.core.models import Role
from cloud.db import make_engine, make_sessionmaker, migrate
from cloud.errors import CloudError, NotFoundError
from cloud.services import build_services
from cloud.settings import CloudSettings
from protocol.clock import SystemClock
from protocol.tracing import LogFormat, configure_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="denen-cloud", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the web app and the MQTT bridge")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--log-format",
        default="json",
        choices=["json", "text"],
        help="json: one object per line with the trace id (default); text: for a terminal",
    )
    user = sub.add_parser("create-user", help="create a user and print its generated password")
    user.add_argument("username")
    user.add_argument("--role", choices=[r.value for r in Role], required=True)
    api_token = sub.add_parser(
        "create-api-token",
        help="an API token for a user's scripts (HTTP Basic: the user name and the token); "
        "printed once",
    )
    api_token.add_argument("username")
    api_token.add_argument("--label", required=True, help="the script or host that uses it")
    reset = sub.add_parser(
        "reset-2fa",
        help="forget a user's authenticator and recovery codes (a lost phone) and end their "
        "sessions; they enrol again at their next login",
    )
    reset.add_argument("username")
    fac = sub.add_parser("add-facility", help="register a facility; prints its id")
    fac.add_argument("name")
    fac.add_argument("--site", required=True)
    fac.add_argument("--gateway", required=True)
    lock = sub.add_parser("add-lock", help="register a lock; prints its PIN key once")
    lock.add_argument("lock_id")
    lock.add_argument("--facility", type=int, required=True)
    lock.add_argument("--name", default="")
    lock.add_argument("--pin-key", default=None, help="64 hex digits; generated if left out")
    lock.add_argument(
        "--offline-secret",
        default=None,
        help="64 hex digits from the pairing file (ID.cloud.json); without it the lock "
        "gets no offline PINs",
    )
    lock.add_argument(
        "--room", type=int, default=None, help="the room whose own door it is (default: entrance)"
    )
    token = sub.add_parser(
        "create-enrollment-token",
        help="a one-time token (24 h) for `denen provision enroll` on a site's Pi",
    )
    token.add_argument("--site", required=True)
    token.add_argument("--gateway", required=True)
    token.add_argument("--by", default="cli", help="who asked for it (kept with the token)")
    sub.add_parser("write-crl", help="write a fresh CRL to DENEN_CLOUD_CRL_PATH (monthly)")
    room = sub.add_parser("add-room", help="add a bookable room (court, hall) to a facility")
    room.add_argument("name")
    room.add_argument("--facility", type=int, required=True)
    room.add_argument("--capacity", type=int, default=None, help="the largest group")
    seed = sub.add_parser(
        "seed-demo", help="facility + room + lock + manager/ops users; prints JSON"
    )
    seed.add_argument("--site", default="gym-a")
    seed.add_argument("--gateway", default="gw-1")
    seed.add_argument("--lock", default="gym-a-1")
    seed.add_argument("--pin-key", default=None)
    seed.add_argument("--offline-secret", default=None)
    clinic = sub.add_parser(
        "seed-clinic",
        help="clinic site (2 departments), patients with cards, today's appointments, a "
        "clinic user; prints JSON",
    )
    clinic.add_argument("--site", default="clinic-a")
    clinic.add_argument("--gateway", default="gw-1")
    clinic.add_argument(
        "--display", action="append", dest="displays", help="a display id (repeat for more)"
    )
    return parser


def _serve(
    settings: CloudSettings, host: str, port: int, log_level: str, log_format: LogFormat
) -> None:
    import uvicorn  # noqa: PLC0415 - only the serve command needs the web server

    from cloud.app import create_app  # noqa: PLC0415

    configure_logging(log_level, log_format, service="cloud")
    # uvicorn's own handlers off: its lines go through ours (JSON, with the trace id), and
    # the access log is TracingMiddleware's one line per request
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,
        access_log=False,
    )


def _admin(settings: CloudSettings, args: argparse.Namespace) -> str:
    migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        sessions = make_sessionmaker(engine)
        svc = build_services(sessions, SystemClock(), settings)
        if args.command == "create-user":
            user, password = svc.users.create(args.username, Role(args.role))
            return f"created {user.role.value} {user.username!r}; password (shown once): {password}"
        if args.command == "create-api-token":
            owner = svc.users.get(args.username)
            if owner is None:
                raise NotFoundError(
                    f"no user {args.username!r}; check the name or create it first "
                    "(denen-cloud create-user)"
                )
            token = svc.api_tokens.create(owner, args.label)
            return f"API token for {owner.username!r} (shown once): {token}"
        if args.command == "reset-2fa":
            owner = svc.second_factor.reset(args.username)
            ended = svc.web_sessions.end_all(owner.id)
            return (
                f"second factor of {owner.username!r} forgotten and {ended} session(s) ended; "
                "they enrol a new authenticator at their next login"
            )
        if args.command == "add-facility":
            facility = svc.facilities.create_facility(args.name, args.site, args.gateway)
            return f"facility {facility.id}: {facility.name} ({facility.site}/{facility.gateway})"
        if args.command == "add-room":
            added = svc.facilities.add_room(args.facility, args.name, args.capacity)
            return f"room {added.id}: {added.name} (facility {added.facility_id})"
        if args.command == "add-lock":
            lock, key = svc.facilities.add_lock(
                args.facility,
                args.lock_id,
                args.name,
                args.pin_key,
                args.room,
                offline_secret=args.offline_secret,
            )
            return f"lock {lock.lock_id} registered; pin_key (pair the lock with it): {key}"
        if args.command == "create-enrollment-token":
            issued = svc.enrollment.create_token(args.site, args.gateway, args.by)
            return json.dumps(
                {
                    "token": issued.token,
                    "site": issued.site,
                    "gateway": issued.gateway,
                    "expires_at": issued.expires_at,
                }
            )
        if args.command == "write-crl":
            return f"CRL written to {svc.enrollment.write_crl()}; send the broker SIGHUP"
        if args.command == "seed-clinic":
            return _seed_clinic(sessions, args)
        with sessions.begin() as session:
            seed = seed_demo(
                session,
                site=args.site,
                gateway=args.gateway,
                lock_id=args.lock,
                pin_key=args.pin_key,
                offline_secret=args.offline_secret,
            )
        return json.dumps(
            {
                "facility_id": seed.facility_id,
                "site": seed.site,
                "gateway": seed.gateway,
                "lock_id": seed.lock_id,
                "room_id": seed.room_id,
                "pin_key": seed.pin_key,
                "users": {
                    u.username: {
                        "role": u.role.value,
                        "password": u.password,
                        "api_token": u.api_token,
                    }
                    for u in seed.users.values()
                },
            }
        )
    finally:
        engine.dispose()


def _seed_clinic(sessions: sessionmaker[Session], args: argparse.Namespace) -> str:
    with sessions.begin() as session:
        seed = seed_clinic(
            session,
            site=args.site,
            gateway=args.gateway,
            displays=args.displays or (f"{args.site}-disp-1",),
        )
    return json.dumps(
        {
            "site": seed.site,
            "gateway": seed.gateway,
            "displays": list(seed.displays),
            "departments": {k: list(v) for k, v in seed.departments.items()},
            "walk_in_department": seed.walk_in_department,
            "patients": [
                {"card": p.card, "name": p.name, "email": p.email, "facility": p.facility}
                for p in seed.patients
            ],
            "appointments": [
                {"card": a.card, "department": a.department, "at": a.at} for a in seed.appointments
            ],
            "users": {
                u.username: {
                    "role": u.role.value,
                    "password": u.password,
                    "api_token": u.api_token,
                }
                for u in seed.users.values()
            },
        }
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``denen-cloud`` console script."""
    args = _parser().parse_args(argv)
    try:
        settings = CloudSettings()
    except ValidationError as exc:
        # messages only: the raw input would echo the environment, secrets included
        reasons = "; ".join(str(err["msg"]) for err in exc.errors(include_input=False))
        print(f"denen-cloud: bad settings: {reasons}", file=sys.stderr)  # noqa: T201
        return 2
    if args.command == "serve":
        _serve(settings, args.host, args.port, args.log_level, args.log_format)
        return 0
    try:
        print(_admin(settings, args))  # noqa: T201 - the CLI's answer
    except CloudError as exc:
        print(f"denen-cloud: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
