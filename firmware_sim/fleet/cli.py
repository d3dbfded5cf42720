"""``denen-sim fleet``: N simulated gateways on one broker, for load.

    denen-sim fleet --gateways 5000 --broker 127.0.0.1:1883 [--locks 2] \\
        [--clinic-every 10 --displays 2] [--telemetry-s 60] [--events-per-s 50] \\
        [--reconnect-window-s 10] [--connect-rate 500] [--control-port 0] \\
        [--tls-ca ca.crt --tls-cert 'certs/{site}.{gateway}.crt' \\
         --tls-key 'certs/{site}.{gateway}.key']

With ``--tls-*`` every gateway connects with mutual TLS, as to the production broker
(``provisioning/broker_config.py``): ``--tls-cert`` and ``--tls-key`` naming ``{site}`` and
``{gateway}`` give each gateway its own certificate (as production issues them: CN
``{site}.{gateway}``, its own ACL user); without them the whole fleet shares one. Without
``--tls-*``: plain TCP.

Sites are ``{prefix}-00001`` … with gateway ``gw-1`` and locks ``{site}-l1`` …; the cloud
must know them for their access snapshots (``bench/fleet.py`` seeds them). Prints one line
with the control API's address once it listens, then serves until SIGTERM or SIGINT (each
gateway then says ``offline``, as a stopping agent does).

The composition root: command line → settings and shape → gateways → fleet → control app
→ uvicorn, on one event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import resource
import signal
import sys
from collections.abc import Generator
from pathlib import Path

import uvicorn

from firmware_sim.errors import SimulatorError
from firmware_sim.fleet.control import create_app
from firmware_sim.fleet.fleet import Fleet, FleetSettings, FleetShape, FleetTls
from firmware_sim.fleet.model import site_name
from protocol.clock import SystemClock
from protocol.ids import SLUG_RE

log = logging.getLogger(__name__)
FDS_PER_GATEWAY = 1
FDS_SPARE = 256  # the control API, logging, the loop's own


def parse_broker(spec: str) -> tuple[str, int]:
    """``HOST:PORT`` → (host, port)."""
    host, sep, port = spec.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"broker {spec!r} is not HOST:PORT")
    return host, int(port)


def add_fleet_parser(devices: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``fleet`` subcommand to ``denen-sim``."""
    fleet = devices.add_parser("fleet", help="N simulated gateways on one broker, for load")
    fleet.add_argument("--gateways", type=int, required=True, help="how many gateways")
    fleet.add_argument(
        "--broker", type=parse_broker, default=("127.0.0.1", 1883), metavar="HOST:PORT"
    )
    fleet.add_argument("--prefix", default="fleet", help="site slugs are PREFIX-00001 …")
    fleet.add_argument("--gateway-id", default="gw-1", help="every site's gateway id")
    fleet.add_argument("--locks", type=int, default=2, help="locks per site")
    fleet.add_argument(
        "--clinic-every", type=int, default=10, help="every Nth site is a clinic (0: none)"
    )
    fleet.add_argument("--displays", type=int, default=2, help="displays per clinic site")
    fleet.add_argument("--telemetry-s", type=float, default=60.0)
    fleet.add_argument(
        "--events-per-s", type=float, default=0.0, help="steady lock events over the fleet"
    )
    fleet.add_argument("--inflight", type=int, default=20, help="QoS 1 in flight per gateway")
    fleet.add_argument("--keepalive", type=int, default=60)
    fleet.add_argument("--connect-rate", type=float, default=500.0, help="connects/s at start")
    fleet.add_argument(
        "--reconnect-window-s",
        type=float,
        default=10.0,
        help="after a lost connection, the first attempt is uniform over this window",
    )
    fleet.add_argument("--reconnect-cap-s", type=float, default=60.0)
    fleet.add_argument("--seed", type=int, default=None, help="random seed (batteries, jitter)")
    fleet.add_argument("--control-host", default="127.0.0.1")
    fleet.add_argument("--control-port", type=int, default=8130, help="0 picks a free port")
    tls = fleet.add_argument_group("mutual TLS (all three, or none for plain TCP)")
    tls.add_argument("--tls-ca", type=Path, metavar="PATH", help="the CA the broker's cert is from")
    tls.add_argument(
        "--tls-cert",
        metavar="PATH",
        help="client certificate; may name {site} and {gateway}: one per gateway",
    )
    tls.add_argument("--tls-key", metavar="PATH", help="its key; the same placeholders")


def raise_fd_limit(needed: int) -> int:
    """Raise the soft open-files limit towards ``needed`` (up to the hard limit); returns
    the soft limit now. One socket per gateway: 5,000 gateways pass Linux's usual 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def _check(args: argparse.Namespace) -> None:
    if args.gateways < 1 or args.gateways > 99_999:
        raise SimulatorError("--gateways must be 1..99999 (site slugs have five digits)")
    if not SLUG_RE.fullmatch(args.prefix) or len(args.prefix) > 30:
        raise SimulatorError(f"--prefix {args.prefix!r} is not a slug of at most 30 characters")
    if not SLUG_RE.fullmatch(args.gateway_id):
        raise SimulatorError(f"--gateway-id {args.gateway_id!r} is not a slug")
    if not 1 <= args.locks <= 32:
        raise SimulatorError("--locks must be 1..32")


def tls_settings(args: argparse.Namespace) -> FleetTls | None:
    """``--tls-*`` as settings, checked by loading the first gateway's certificate (a
    wrong path or key says so now, not as 5,000 failed connects)."""
    given = [args.tls_ca, args.tls_cert, args.tls_key]
    if not any(given):
        return None
    if not all(given):
        raise SimulatorError("mutual TLS needs --tls-ca, --tls-cert and --tls-key together")
    tls = FleetTls(args.tls_ca, args.tls_cert, args.tls_key)
    try:
        files = tls.files(site_name(args.prefix, 1), args.gateway_id)
    except (KeyError, IndexError, ValueError) as exc:
        raise SimulatorError(
            f"--tls-cert/--tls-key may name only {{site}} and {{gateway}}: {exc!r}"
        ) from None
    try:
        tls.context(*files)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise SimulatorError(
            f"cannot load the TLS files (--tls-ca {args.tls_ca}, --tls-cert {files[0]}, "
            f"--tls-key {files[1]}): {exc}"
        ) from exc
    return tls


async def serve_fleet(args: argparse.Namespace) -> None:
    """Run the fleet and its control API until a signal."""
    _check(args)
    tls = tls_settings(args)
    soft = raise_fd_limit(args.gateways * FDS_PER_GATEWAY + FDS_SPARE)
    if soft < args.gateways + FDS_SPARE:
        log.warning(
            "open-files limit %d is below %d gateways; raise the hard limit (ulimit -Hn)",
            soft,
            args.gateways,
        )
    clock = SystemClock()
    rng = random.Random(args.seed)  # noqa: S311 - jitter and batteries, not crypto
    host, port = args.broker
    try:
        settings = FleetSettings(
            host=host,
            port=port,
            keepalive_s=args.keepalive,
            telemetry_s=args.telemetry_s,
            inflight=args.inflight,
            connect_rate=args.connect_rate,
            reconnect_window_s=args.reconnect_window_s,
            reconnect_cap_s=args.reconnect_cap_s,
            events_per_s=args.events_per_s,
            tls=tls,
        )
    except ValueError as exc:
        raise SimulatorError(str(exc)) from None
    shape = FleetShape(
        args.gateways,
        prefix=args.prefix,
        gateway=args.gateway_id,
        locks=args.locks,
        clinic_every=args.clinic_every,
        displays=args.displays,
    )
    fleet = Fleet(shape.build(clock.now(), rng), settings, clock, rng)
    config = uvicorn.Config(
        create_app(fleet),
        host=args.control_host,
        port=args.control_port,
        lifespan="off",
        log_level="warning",
    )
    server = _Server(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, setattr, server, "should_exit", True)
    async with asyncio.TaskGroup() as tasks:
        running = tasks.create_task(fleet.run(), name="fleet")
        tasks.create_task(_announce(server, args), name="announce")
        await server.serve()
        fleet.stop()
        await running


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: we own SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def _announce(server: uvicorn.Server, args: argparse.Namespace) -> None:
    # printed once the control port really listens: scripts and tests wait for it
    while not server.started:
        if server.should_exit:
            return
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    host, broker_port = args.broker
    tls = "" if args.tls_ca is None else " (mutual TLS)"
    sys.stdout.write(
        f"fleet of {args.gateways} gateways on {host}:{broker_port}{tls}, "
        f"control http://{args.control_host}:{port}/api/fleet\n"
    )
    sys.stdout.flush()
