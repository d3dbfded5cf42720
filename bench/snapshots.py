"""How fast the cloud gets every gateway's retained access snapshot out when it connects
(after a broker restart, all of them go out again), in one run.

Parts: a fresh PostgreSQL database ``denen_bench_…`` on 127.0.0.1:5432 (dropped
afterwards) seeded like ``bench/fleet.py`` — one facility per site with a room, an entrance
lock and the room's lock, ``--grants`` live slot-PIN bookings per site plus one whose
window has ended, and every 10th site a cancelled offline PIN (a revocation list entry);
a private Mosquitto; the cloud's :class:`~cloud.mqtt_bridge.MqttBridge` in this process
(on the cloud's services, without the clinic and fleet parts, so only snapshots go out);
and a paho subscriber on ``denen/v1/+/+/access`` in its own process (MQTT 5, Receive
Maximum 65535, retain as published) that counts distinct topics.

Figures:

- build: ``AccessService.snapshot()`` one by one for ``--compare`` gateways against
  ``AccessService.snapshots()`` for the same gateways at once (same output checked);
  "n/a" on a tree that has no ``snapshots()``.
- publish: from ``MqttBridge.start()`` until the subscriber has received every gateway's
  snapshot, published retained; also the time to the broker connection. Afterwards a
  fresh subscriber counts the retained snapshots the broker holds.

Last line: ``RESULT snapshots_per_s=<n> gateways=<n> connect_to_all_s=<x.x>
build_speedup=<x.x>``. Never fails on time; it only measures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy import create_engine, insert

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pg import bench_database  # noqa: E402
from cloud.db import make_engine, make_sessionmaker, migrate  # noqa: E402
from cloud.gym.link import AccessLink  # noqa: E402
from cloud.gym.models import (  # noqa: E402
    AccessGrant,
    Facility,
    Lock,
    OfflinePin,
    Reservation,
    ReservationStatus,
    Room,
    SiteAccessVersion,
)
from cloud.mqtt_bridge import MqttBridge  # noqa: E402
from cloud.mqtt_routes import Routes  # noqa: E402
from cloud.services import build_services  # noqa: E402
from cloud.settings import CloudSettings  # noqa: E402
from protocol import topics  # noqa: E402
from protocol.clock import SystemClock  # noqa: E402
from protocol.topics import Channel  # noqa: E402
from provisioning.broker import Mosquitto  # noqa: E402

PREFIX = "snap"
GATEWAY = "gw-1"
HOUR = 3600
ACCESS_FILTER = topics.cloud_subscription(Channel.ACCESS, shared=False)  # every gateway


# ------------------------------------------------------------------ database


def _booking(facility_id: int, room_id: int, start: int, now: int) -> dict[str, object]:
    return {
        "id": str(uuid.uuid4()),
        "facility_id": facility_id,
        "room_id": room_id,
        "citizen_name": "Snapshot bench",
        "email": "bench@example.jp",
        "starts_at": start,
        "ends_at": start + HOUR,
        "status": ReservationStatus.APPROVED,
        "access_token": secrets.token_hex(16),
        "created_at": now,
    }


def _grant(reservation: dict[str, object], pin: str | None, now: int) -> dict[str, object]:
    start = int(str(reservation["starts_at"]))
    return {
        "id": str(uuid.uuid4()),
        "reservation_id": reservation["id"],
        "pin": pin,
        "window_start": start - 900,
        "window_end": start + HOUR + 900,
        "created_at": now,
        "revoked_at": None,  # every row has every key: an executemany takes the first's
    }


def seed(url: str, gateways: int, grants: int) -> list[tuple[str, str]]:
    """Per site: a facility, a room, an entrance lock and the room's lock, snapshot v1,
    ``grants`` live slot-PIN grants and one ended; every 10th site a cancelled offline
    PIN. Returns the (site, gateway) keys."""
    now = int(time.time())
    engine = create_engine(url)
    sites = [f"{PREFIX}-{i:05d}" for i in range(1, gateways + 1)]
    with engine.begin() as conn:
        rows = conn.execute(
            insert(Facility).returning(Facility.id, Facility.site, sort_by_parameter_order=True),
            [{"name": f"Bench site {s}", "site": s, "gateway": GATEWAY} for s in sites],
        ).all()
        facility = {site: fid for fid, site in rows}
        room_rows = conn.execute(
            insert(Room).returning(Room.id, Room.facility_id, sort_by_parameter_order=True),
            [{"facility_id": facility[s], "name": "Main hall"} for s in sites],
        ).all()
        room = {fid: rid for rid, fid in room_rows}
        lock_rows = conn.execute(
            insert(Lock).returning(Lock.id, Lock.facility_id, sort_by_parameter_order=True),
            [
                {
                    "lock_id": f"{s}-{door}",
                    "facility_id": facility[s],
                    "room_id": None if door == "entrance" else room[facility[s]],
                    "name": door,
                    "pin_key": secrets.token_hex(32),
                }
                for s in sites
                for door in ("entrance", "hall")
            ],
        ).all()
        room_lock = {fid: lid for lid, fid in lock_rows}  # the later one: the hall's door
        reservations: list[dict[str, object]] = []
        grant_rows: list[dict[str, object]] = []
        offline: list[dict[str, object]] = []
        for i, s in enumerate(sites):
            fid = facility[s]
            for g in range(grants):
                r = _booking(fid, room[fid], now + (g + 1) * 2 * HOUR, now)
                reservations.append(r)
                grant_rows.append(_grant(r, f"{secrets.randbelow(10**6):06d}", now))
            ended = _booking(fid, room[fid], now - 3 * HOUR, now)
            reservations.append(ended)
            grant_rows.append(_grant(ended, "135790", now))
            if i % 10 == 0:
                cancelled = _booking(fid, room[fid], now + HOUR, now)
                cancelled["status"] = ReservationStatus.CANCELLED
                reservations.append(cancelled)
                grant = _grant(cancelled, None, now) | {"revoked_at": now}
                grant_rows.append(grant)
                offline.append(
                    {
                        "grant_id": grant["id"],
                        "lock_id": room_lock[fid],
                        "start_hour": now // HOUR + 1,
                        "hours": 1,
                        "nonce": 0,
                        "reason": "bench",
                        "created_at": now,
                    }
                )
        conn.execute(insert(Reservation), reservations)
        conn.execute(insert(AccessGrant), grant_rows)
        conn.execute(insert(OfflinePin), offline)
        conn.execute(
            insert(SiteAccessVersion),
            [{"site": s, "gateway": GATEWAY, "version": 1, "updated_at": now} for s in sites],
        )
    engine.dispose()
    return [(s, GATEWAY) for s in sites]


# ------------------------------------------------------------------ building


def compare_builds(url: str, keys: list[tuple[str, str]]) -> tuple[float, float]:
    """Seconds for ``snapshot()`` one by one and for ``snapshots()`` (nan: not here)."""
    engine = make_engine(url)
    services = build_services(make_sessionmaker(engine), SystemClock(), _settings(url, 1883))
    access = services.access
    try:
        access.snapshot(*keys[0])  # warm the pool and the statement cache
        t0 = time.perf_counter()
        one_by_one = {key: access.snapshot(*key) for key in keys}
        single_s = time.perf_counter() - t0
        many = getattr(access, "snapshots", None)
        if many is None:
            return single_s, float("nan")
        many(keys[:2])
        t0 = time.perf_counter()
        batch = many(keys)
        batch_s = time.perf_counter() - t0
        batch = batch if isinstance(batch, dict) else dict(zip(keys, batch, strict=True))
        same = all(batch[key] == one_by_one[key] for key in keys)
        print(f"    snapshots() equals snapshot() for all {len(keys)}: {same}")
        return single_s, batch_s
    finally:
        engine.dispose()


# ------------------------------------------------------------------ publishing


def _settings(url: str, port: int) -> CloudSettings:
    return CloudSettings(
        database_url=url,
        secret_key=secrets.token_urlsafe(32),
        metrics_token=secrets.token_urlsafe(32),
        mqtt_host="127.0.0.1",
        mqtt_port=port,
        mqtt_client_id="bench-snapshots",
    )


def _paho(port: int) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.ReceiveMaximum = 65535
    client.connect("127.0.0.1", port, properties=props)
    return client


def subscriber(port: int, n: int) -> None:
    """Child process: wait for ``n`` distinct access topics published retained, print the
    monotonic time of the last; then count what a fresh subscriber gets retained."""
    seen: set[str] = set()
    all_in = threading.Event()
    subscribed = threading.Event()

    def on_message(_c: object, _u: object, message: paho.MQTTMessage) -> None:
        if message.retain:
            seen.add(message.topic)
            if len(seen) == n:
                all_in.set()

    sub = _paho(port)
    sub.on_message = on_message
    sub.on_subscribe = lambda *_: subscribed.set()
    sub.subscribe(ACCESS_FILTER, options=SubscribeOptions(qos=1, retainAsPublished=True))
    sub.loop_start()
    subscribed.wait(10)
    print("ready", flush=True)
    finished = all_in.wait(float(os.environ.get("BENCH_SNAPSHOTS_LIMIT_S", "600")))
    print(f"done {time.monotonic() if finished else float('nan')} {len(seen)}", flush=True)
    sub.loop_stop()
    sub.disconnect()

    retained: set[str] = set()
    fresh = _paho(port)
    fresh.on_message = lambda _c, _u, m: retained.add(m.topic) if m.retain else None
    fresh.subscribe(ACCESS_FILTER, qos=1)
    fresh.loop_start()
    deadline = time.monotonic() + 60
    while len(retained) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    fresh.loop_stop()
    fresh.disconnect()
    print(f"retained {len(retained)}", flush=True)


async def run_bridge(url: str, port: int, child: subprocess.Popen[str]) -> tuple[float, float]:
    """Start the bridge; seconds until connected and until the subscriber had them all."""
    assert child.stdout is not None
    engine = make_engine(url)
    settings = _settings(url, port)
    clock = SystemClock()
    link = AccessLink(build_services(make_sessionmaker(engine), clock, settings).access, clock)
    bridge = MqttBridge(settings, Routes(), [link])
    done = asyncio.create_task(asyncio.to_thread(child.stdout.readline))
    t0 = time.monotonic()
    await bridge.start()
    try:
        await bridge.wait_connected()
        connected_s = time.monotonic() - t0
        line = (await done).split()
        received = int(line[2]) if len(line) == 3 else 0
        last = float(line[1]) if len(line) == 3 else float("nan")
        print(
            f"    the subscriber got {received} snapshots; the bridge had "
            f"{link.stats.snapshots_published} PUBACKs by then"
        )
        return connected_s, last - t0
    finally:
        await bridge.stop()
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--gateways", type=int, default=5000)
    parser.add_argument("--grants", type=int, default=3, help="live slot-PIN grants per site")
    parser.add_argument("--compare", type=int, default=200, help="gateways in the build test")
    parser.add_argument("--subscriber", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscriber:
        subscriber(int(args.subscriber[0]), int(args.subscriber[1]))
        return
    n = args.gateways
    with bench_database() as url, tempfile.TemporaryDirectory() as tmp:
        migrate(url)
        t0 = time.perf_counter()
        keys = seed(url, n, args.grants)
        print(
            f"[0] seeded {n} gateways (2 locks, {args.grants}+1 grants each) in "
            f"{time.perf_counter() - t0:.1f} s"
        )

        compared = keys[: min(args.compare, n)]
        print(f"[1] build {len(compared)} snapshots")
        single_s, batch_s = compare_builds(url, compared)
        print(f"    snapshot() one by one: {single_s:.2f} s ({len(compared) / single_s:,.0f}/s)")
        if batch_s == batch_s:  # not nan
            print(f"    snapshots() at once:  {batch_s:.3f} s ({len(compared) / batch_s:,.0f}/s)")
        else:
            print("    snapshots() at once:  n/a (not in this tree)")

        print(f"[2] the bridge connects and publishes {n} retained snapshots")
        broker = Mosquitto(Path(tmp) / "broker")
        broker.start()
        child = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--subscriber",
                str(broker.port),
                str(n),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError("the subscriber did not start")
            connected_s, all_s = asyncio.run(run_bridge(url, broker.port, child))
            retained = child.stdout.readline().strip()
            child.wait(90)
        finally:
            if child.poll() is None:
                child.kill()
            broker.stop()

    rate = n / all_s
    print(
        f"    connected after {connected_s:.2f} s; every snapshot received after "
        f"{all_s:.1f} s: {rate:,.0f} snapshots/s"
    )
    print(f"    a fresh subscriber then got {retained.removeprefix('retained ')} retained")
    speedup = single_s / batch_s
    print(
        f"RESULT snapshots_per_s={rate:.0f} gateways={n} connect_to_all_s={all_s:.1f} "
        f"build_speedup={speedup:.1f}"
    )


if __name__ == "__main__":
    main()
