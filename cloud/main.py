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
from cloud.errors import CloudError, InvalidRequestError, NotFoundError
from cloud.services import build_services
from cloud.settings import CloudSettings
from protocol.clock import SystemClock
from protocol.secret_args import STDIN, SecretInputError, add_secret_file, read_secret
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
    lock = sub.add_parser(
        "add-lock",
        help="register a lock; its keys come from `denen provision lock pair` at the door",
    )
    lock.add_argument("lock_id")
    lock.add_argument("--facility", type=int, required=True)
    lock.add_argument("--name", default="")
    _key_files(lock)
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
    _key_files(seed)
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


def _key_files(parser: argparse.ArgumentParser) -> None:
    """A lock's keys for a lock paired some other way: from files or stdin, never as
    arguments (a pairing sends them itself, over MQTT)."""
    add_secret_file(
        parser,
        "--pin-key",
        what="PIN key",
        help="the lock's PIN key, 64 hex digits; a random one (to be replaced by the "
        "lock's pairing) if left out",
    )
    add_secret_file(
        parser,
        "--offline-secret",
        what="offline secret",
        help="the lock's offline secret, 64 hex digits; without it the lock gets no offline "
        "PINs until its pairing sends it",
    )


def _key_args(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """The PIN key and offline secret of ``--pin-key-file`` / ``--offline-secret-file``."""
    if args.pin_key_file == STDIN and args.offline_secret_file == STDIN:
        raise InvalidRequestError(
            "only one key can come from standard input: give the other one as a file"
        )
    return (
        None if args.pin_key_file is None else read_secret(args.pin_key_file, "PIN key"),
        None
        if args.offline_secret_file is None
        else read_secret(args.offline_secret_file, "offline secret"),
    )


def _serve(
    settings: CloudSettings, host: str, port: int, log_level: str, log_format: LogFormat
) -> None:
    import uvicorn  # noqa: PLC0415 - only the serve command needs the web server

    from cloud.app import create_app  # noqa: PLC0415

    configure_logging(log_level, log_format, service="cloud")
    # uvicorn's own handlers off: its lines go through ours (JSON, with the trace id), and
    # the access log is TracingMiddleware's one line per request. Its proxy headers off:
    # uvicorn would believe X-Forwarded-For from 127.0.0.1 whatever the deployment says;
    # DENEN_CLOUD_TRUSTED_PROXIES decides, in one place (cloud/core/addresses.py)
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,
        access_log=False,
        proxy_headers=False,
    )


def _admin(settings: CloudSettings, args: argparse.Namespace) -> str:
    migrate(settings.database_url, settings.secret_key)
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
            pin_key, offline_secret = _key_args(args)
            lock, _key = svc.facilities.add_lock(
                args.facility,
                args.lock_id,
                args.name,
                pin_key,
                args.room,
                offline_secret=offline_secret,
            )
            return (
                f"lock {lock.lock_id} registered; pair it at the door "
                f"(`denen provision lock pair --id {lock.lock_id} ...`): the pairing sends its "
                "keys to the cloud, which confirms to the technician"
            )
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
        pin_key, offline_secret = _key_args(args)
        with sessions.begin() as session:
            seed = seed_demo(
                session,
                site=args.site,
                gateway=args.gateway,
                lock_id=args.lock,
                pin_key=pin_key,
                offline_secret=offline_secret,
            )
        return json.dumps(
            {
                "facility_id": seed.facility_id,
                "site": seed.site,
                "gateway": seed.gateway,
                "lock_id": seed.lock_id,
                "room_id": seed.room_id,
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
    except (CloudError, SecretInputError) as exc:
        print(f"denen-cloud: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
