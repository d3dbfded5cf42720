"""What a telemetry report costs the cloud: the CPU of the services that store it, in this
process, against a fresh PostgreSQL database.

A city of ``--gateways`` gateways (2 locks each, every 10th site a clinic with 2 displays,
as ``bench/fleet.py`` runs it) reports its telemetry, every payload built by the fleet
simulator's model (:mod:`firmware_sim.fleet.model`) and parsed as the bridge parses it
(not timed). Each report goes to both services that take it, as the bridge and the fleet
link hand it on: :meth:`LockReportService.record_telemetry_many` (lock sync rows)
and :meth:`HealthService.record_telemetry_many` (health, samples, twins, alerts).

The database is seeded (not timed) with one facility per site and its locks, and with
every site, gateway (online) and lock device as a birth leaves them. Then, timed with
``time.process_time`` (this process's CPU: the cloud's side, not the database server's)
and the wall clock:

- two rounds of every gateway's report, 60 s apart, in batches of ``--batch``: the first
  finds the displays and every twin new and takes a history sample and a battery forecast
  of every device; the second is the steady state (no sample is due);
- a sample of ``--single`` gateways, 60 s later, one report at a time through
  ``record_telemetry`` (one transaction per report and service, as before batching).

Last line: ``RESULT telemetry_reports_per_s=<n> cpu_ms_per_report=<x.xx>
single_cpu_ms_per_report=<x.xx>``: reports per wall second and CPU per report over both
batched rounds, and CPU per report one at a time (a steady-state figure). At 5,000
gateways reporting every 60 s the cloud takes about 83 reports a second.
Never fails on time; it only measures. The database ``denen_bench_…`` on 127.0.0.1:5432
(``DENEN_BENCH_POSTGRES_URL``) is dropped afterwards.
"""

from __future__ import annotations

import argparse
import random
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from sqlalchemy import insert

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pg import bench_database  # noqa: E402
from cloud.core.models import Site  # noqa: E402
from cloud.db import make_engine, make_sessionmaker, migrate  # noqa: E402
from cloud.fleet.kinds import DeviceKind  # noqa: E402
from cloud.fleet.models import (  # noqa: E402
    Device,
    Gateway,
)
from cloud.fleet.services import build_fleet_services  # noqa: E402
from cloud.gym.models import Facility, Lock, Room  # noqa: E402
from cloud.services import build_services  # noqa: E402
from cloud.settings import CloudSettings  # noqa: E402
from firmware_sim.fleet.fleet import FleetShape  # noqa: E402
from firmware_sim.fleet.model import SimGateway  # noqa: E402
from protocol import messages  # noqa: E402
from protocol.clock import ManualClock  # noqa: E402
from protocol.messages import GatewayState, TelemetryData  # noqa: E402

START = 1_800_000_000
INTERVAL_S = 60

Report = tuple[str, str, TelemetryData]


def seed(url: str, fleet: Sequence[SimGateway]) -> None:
    """One facility per site with its locks (so lock sync rows are written), and the
    site, gateway and lock device rows a birth leaves."""
    engine = make_engine(url)
    with engine.begin() as conn:
        rows = conn.execute(
            insert(Facility).returning(Facility.id, Facility.site, sort_by_parameter_order=True),
            [{"name": f"Fleet site {g.site}", "site": g.site, "gateway": g.gateway} for g in fleet],
        ).all()
        facility = {site: fid for fid, site in rows}
        conn.execute(
            insert(Room), [{"facility_id": facility[g.site], "name": "Main hall"} for g in fleet]
        )
        conn.execute(
            insert(Lock),
            [
                {
                    "lock_id": lock.lock_id,
                    "facility_id": facility[g.site],
                    "name": f"Door {i}",
                    "pin_key": secrets.token_hex(32),
                }
                for g in fleet
                for i, lock in enumerate(g.locks, 1)
            ],
        )
        conn.execute(
            insert(Site),
            [{"slug": g.site, "name": f"Fleet site {g.site}", "created_at": START} for g in fleet],
        )
        conn.execute(
            insert(Gateway),
            [
                {
                    "site": g.site,
                    "gateway": g.gateway,
                    "state": GatewayState.ONLINE.value,
                    "last_seen": START,
                    "available": True,
                    "available_since": START,
                    "outbox_growth": 0,
                }
                for g in fleet
            ],
        )
        conn.execute(
            insert(Device),
            [
                {
                    "site": g.site,
                    "gateway": g.gateway,
                    "device_id": lock.lock_id,
                    "kind": DeviceKind.LOCK,
                    "first_seen_at": START,
                }
                for g in fleet
                for lock in g.locks
            ],
        )
    engine.dispose()


def reports(fleet: Sequence[SimGateway], now: float) -> list[Report]:
    """Every gateway's telemetry as the bridge hands it on: parsed from the payload."""
    out = []
    for g in fleet:
        _env, data = messages.parse(g.telemetry(now, now - START, outbox_depth=0))
        assert isinstance(data, TelemetryData)
        out.append((g.site, g.gateway, data))
    return out


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) that ``fn`` took."""
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--gateways", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--single", type=int, default=200)
    args = parser.parse_args()
    fleet = FleetShape(gateways=args.gateways).build(START, random.Random(7))
    locks = sum(len(g.locks) for g in fleet)
    displays = sum(len(g.displays) for g in fleet)
    print(f"gateways={len(fleet)} locks={locks} displays={displays} batch={args.batch}")
    with bench_database() as url:
        migrate(url)
        seed(url, fleet)
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        clock = ManualClock(START)
        settings = CloudSettings(dev=True)
        health = build_fleet_services(sessions, clock, settings).health
        locks = build_services(sessions, clock, settings).lock_reports

        def batched(chunks: list[list[Report]]) -> None:
            for batch in chunks:
                locks.record_telemetry_many(batch)
                health.record_telemetry_many(batch)

        cpu = wall = 0.0
        for round_ in (1, 2):
            clock.set(START + round_ * INTERVAL_S)
            todo = reports(fleet, clock.now())
            chunks = [todo[i : i + args.batch] for i in range(0, len(todo), args.batch)]
            round_cpu, round_wall = timed(partial(batched, chunks))
            cpu += round_cpu
            wall += round_wall
            print(
                f"round {round_} batched: {round_wall:.2f} s wall, {round_cpu:.2f} s CPU, "
                f"{len(todo) / round_wall:,.0f} reports/s, "
                f"{round_cpu / len(todo) * 1000:.2f} ms CPU per report"
            )
        clock.set(START + 3 * INTERVAL_S)
        step = max(len(fleet) // max(args.single, 1), 1)
        sample = reports(fleet[::step][: args.single], clock.now())

        def one_at_a_time() -> None:
            for site, gateway, telemetry in sample:
                locks.record_telemetry(site, gateway, telemetry)
                health.record_telemetry(site, gateway, telemetry)

        single_cpu, single_wall = timed(one_at_a_time)
        print(
            f"one at a time ({len(sample)} reports): {single_wall:.2f} s wall, "
            f"{single_cpu:.2f} s CPU, {single_cpu / len(sample) * 1000:.2f} ms CPU per report"
        )
        engine.dispose()
    n = 2 * len(fleet)
    per_report = cpu / n * 1000
    single = single_cpu / max(len(sample), 1) * 1000
    print(f"batched vs one at a time: {single / per_report:.1f}x less CPU per report")
    print(
        f"RESULT telemetry_reports_per_s={n / wall:.0f} cpu_ms_per_report={per_report:.2f} "
        f"single_cpu_ms_per_report={single:.2f}"
    )


if __name__ == "__main__":
    main()
