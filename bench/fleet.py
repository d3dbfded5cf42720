"""A city's fleet on one machine: N simulated gateways, one Mosquitto, one cloud process.

Processes: a private Mosquitto (plain TCP on loopback, or mutual TLS with ``--tls``, see
below; persistence on, as ``provisioning/broker.py`` runs it), the cloud
(``python -m cloud.main serve``) on PostgreSQL — what a city of thousands of gateways
runs; a fresh database ``denen_bench_…`` on 127.0.0.1:5432, dropped afterwards — and the
fleet simulator (``python -m firmware_sim.main fleet``, :mod:`firmware_sim.fleet`): every
gateway with its locks (2), every 10th site a clinic with 2 displays, telemetry every 60 s.
The cloud DB is seeded with one facility per site and its locks, so every gateway has an
access snapshot, which the cloud publishes (retained) when it connects.

Figures:

- ingest: every gateway sends ``--events-per-gateway`` lock events (QoS 1) at once; timed
  from the first publish until the last one is stored in PostgreSQL. Against it, in the
  same run on the same broker: the same number of payloads of the same size and shape,
  from a paho publisher (100 in flight) to a paho subscriber that only counts, in its own
  process (``bench/ingest.py``'s raw pipe, on a topic root the cloud does not subscribe
  to). ``ingest_ratio`` = ours / raw; ours waits at most 300 s and counts what was
  stored by then.
- steady state (printed, not in RESULT): one telemetry interval with nothing else, the
  cloud's CPU per report, and whether it heard every gateway within 75 s.
- the dashboard (printed): the sites overview, its live part, the sites API and the
  alerts inbox as ``ops`` with every site there.
- cloud_rss_mb: the cloud process's VmRSS while the fleet is connected: the largest of
  the samples taken every 2 s.
- resync_s: the broker is stopped (SIGTERM: it saves its persistence), every site gets a
  new grant and a new snapshot version in the DB meanwhile, the broker starts again; the
  time from the broker listening again until every gateway holds its new version. The
  gateways reconnect after a delay uniform over ``--reconnect-window-s``; the cloud
  reconnects with its own backoff and publishes every snapshot again. Printed on the way:
  when the cloud, and every gateway, had reconnected, and when the cloud had republished
  every snapshot (``denen_mqtt_snapshots_published`` on its ``/metrics``).

``--tls``: every connection as in production. A CA made for the run in the work directory
by the project's own PKI code (``provisioning.pki``, ``protocol.certs``: P-256), with the
broker's certificate (``localhost``, ``127.0.0.1``), the cloud's (CN ``cloud``), one per
gateway (CN ``{site}.gw-1``: 5,000 take 3.5 s, most of it fsync) and one for the raw pipe;
the broker runs the production config (``provisioning/broker_config.py``: TLS 1.2 or newer,
``require_certificate``, ``use_identity_as_username``, the CRL) with the ACL production
renders (``protocol.acl``: each gateway confined to its own subtree) plus the raw pipe's
root. The cloud gets ``DENEN_CLOUD_MQTT_TLS_*``, the fleet ``--tls-ca/--tls-cert/--tls-key``
(a certificate per gateway), and both ends of the raw pipe connect with TLS too, so
``ingest_ratio`` compares like with like. Printed besides: 200 TLS handshakes alone, one at
a time (``[0]``: the broker's and a client's CPU per handshake), and in the connect and
resync phases the broker's and the fleet's CPU per connection made (all a connection then
does included: set it against a plain run's cpu lines), and the fleet's RSS (asyncio's TLS
transport keeps a 256 KiB read buffer per connection: ~300 KB per gateway, not 4.5 KB).

``--py-spy DIR`` records the cloud and the fleet in the steady state, during ingest and
during the resync (collapsed stacks; ``pip install py-spy``).

Last line: ``RESULT gateways=<n> ingest_ratio=<x.xx> cloud_rss_mb=<n> resync_s=<x.x>``.
Never fails on time; it only measures (a figure that could not be taken prints as nan,
a resync that did not finish as inf).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import os
import random
import resource
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sqlalchemy import create_engine, insert, text, update

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pg import bench_database, psycopg_dsn  # noqa: E402
from cloud.core.users import hash_password  # noqa: E402
from cloud.db import migrate  # noqa: E402
from cloud.gym.models import (  # noqa: E402
    AccessGrant,
    Facility,
    Lock,
    Reservation,
    ReservationStatus,
    Room,
    SiteAccessVersion,
)
from firmware_sim.fleet.fleet import FleetShape  # noqa: E402
from firmware_sim.fleet.model import lock_name, site_name  # noqa: E402
from protocol import certs  # noqa: E402
from protocol.acl import render_acl  # noqa: E402
from provisioning import pki  # noqa: E402
from provisioning.broker import Mosquitto, free_port, wait_for_port  # noqa: E402
from provisioning.broker_config import BrokerConfig, render_config  # noqa: E402

INGEST_SCRIPT = ROOT / "bench" / "ingest.py"
RAW_ROOT = "bench/v1"  # as long as "denen/v1": same topic sizes, not the cloud's
RAW_INFLIGHT = 100
PREFIX = "fleet"
GATEWAY = "gw-1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
INGEST_LIMIT_S = 300.0
RESYNC_LIMIT_S = 600.0
RAW_IDENTITY = "bench-raw"  # --tls: the raw pipe's certificate CN, its own ACL user
HANDSHAKES = 200


# ------------------------------------------------------------------ processes and /proc


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of ``pid`` (0 when it is gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass
class CpuMeter:
    """CPU seconds per process and the machine's busy share over one phase."""

    pids: dict[str, Callable[[], int | None]]
    start: dict[str, float] = field(default_factory=dict)
    machine: tuple[float, float] = (0.0, 0.0)
    spent: dict[str, float] = field(default_factory=dict)  # after the block

    def __enter__(self) -> CpuMeter:
        self.start = {name: cpu_s(pid()) for name, pid in self.pids.items()}
        self.machine = machine_busy()
        return self

    def __exit__(self, *_: object) -> None:
        busy, total = machine_busy()
        spent = {name: cpu_s(pid()) - self.start[name] for name, pid in self.pids.items()}
        self.spent = spent
        share = (busy - self.machine[0]) / max(total - self.machine[1], 1)
        parts = ", ".join(f"{name} {s:.1f}" for name, s in spent.items())
        print(f"    cpu s: {parts}; machine busy {share:.0%} of {os.cpu_count()} cores")


@contextlib.contextmanager
def profiled(directory: Path | None, name: str, pids: dict[str, int | None]) -> Iterator[None]:
    """py-spy (``pip install py-spy``) on each process while the block runs, when asked:
    collapsed stacks in ``directory/{name}-{process}.txt`` (flamegraph.pl or speedscope
    read them)."""
    if directory is None:
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    spies = [
        subprocess.Popen(
            [
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "--rate",
                "200",
                "--threads",
                "--output",
                str(directory / f"{name}-{process}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for process, pid in pids.items()
        if pid is not None
    ]
    try:
        yield
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for spy in spies:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()


def raise_fd_limit() -> int:
    """Soft open-files limit up to the hard one; Mosquitto and the fleet inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _listening(port: int) -> bool:
    try:
        wait_for_port(port, timeout=0.05)
    except TimeoutError:
        return False
    return True


SETTLE_LIMIT_S = 300.0


def caught_up(url: str, version: int, locks: int, limit_s: float = SETTLE_LIMIT_S) -> str:
    """Wait until the cloud has recorded every lock's ``access/applied`` of ``version``
    (the reports queue behind births and telemetry in its one inbox); says how long."""
    t0 = time.monotonic()
    with psycopg.connect(psycopg_dsn(url), autocommit=True) as conn:

        def applied() -> int:
            row = conn.execute(
                "select count(*) from locks where applied_version >= %s", (version,)
            ).fetchone()
            return int(row[0]) if row else 0

        if wait_until(lambda: applied() >= locks, limit_s, 0.5):
            return f"{time.monotonic() - t0:.0f} s later"
        return f"not within {limit_s:.0f} s ({applied()} of {locks} locks recorded)"


def wait_until(probe: Callable[[], bool], timeout: float, poll: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return True
        time.sleep(poll)
    return probe()


# ------------------------------------------------------------------ database


def seed(url: str, shape: FleetShape) -> None:
    """One facility per site (open around the clock), one room, its locks, snapshot v1."""
    now = int(time.time())
    engine = create_engine(url)
    sites = [f"{PREFIX}-{i:05d}" for i in range(1, shape.gateways + 1)]
    with engine.begin() as conn:
        rows = conn.execute(
            insert(Facility).returning(Facility.id, Facility.site, sort_by_parameter_order=True),
            [{"name": f"Fleet site {s}", "site": s, "gateway": GATEWAY} for s in sites],
        ).all()
        facility = {site: fid for fid, site in rows}
        conn.execute(
            insert(Room), [{"facility_id": facility[s], "name": "Main hall"} for s in sites]
        )
        conn.execute(
            insert(Lock),
            [
                {
                    "lock_id": lock_name(s, i),
                    "facility_id": facility[s],
                    "name": f"Door {i}",
                    "pin_key": secrets.token_hex(32),
                }
                for s in sites
                for i in range(1, shape.locks + 1)
            ],
        )
        conn.execute(
            insert(SiteAccessVersion),
            [{"site": s, "gateway": GATEWAY, "version": 1, "updated_at": now} for s in sites],
        )
    engine.dispose()


def change_every_snapshot(url: str) -> dict[int, int]:
    """One new approved booking with a PIN per site, and the next snapshot version (as an
    approval does); returns version → sites."""
    now = int(time.time())
    engine = create_engine(url)
    with engine.begin() as conn:
        rooms = conn.execute(text("select id, facility_id from rooms")).all()
        reservations = []
        grants = []
        for room_id, facility_id in rooms:
            rid = str(uuid.uuid4())
            reservations.append(
                {
                    "id": rid,
                    "facility_id": facility_id,
                    "room_id": room_id,
                    "citizen_name": "Fleet bench",
                    "email": "bench@example.jp",
                    "starts_at": now + 3600,
                    "ends_at": now + 7200,
                    "status": ReservationStatus.APPROVED,
                    "access_token": secrets.token_hex(16),
                    "created_at": now,
                }
            )
            grants.append(
                {
                    "id": str(uuid.uuid4()),
                    "reservation_id": rid,
                    "pin": f"{secrets.randbelow(10**6):06d}",
                    "window_start": now + 2700,
                    "window_end": now + 8100,
                    "created_at": now,
                }
            )
        conn.execute(insert(Reservation), reservations)
        conn.execute(insert(AccessGrant), grants)
        conn.execute(
            update(SiteAccessVersion).values(version=SiteAccessVersion.version + 1, updated_at=now)
        )
        versions = conn.execute(
            text("select version, count(*) from site_access_versions group by version")
        ).all()
    engine.dispose()
    return {int(v): int(n) for v, n in versions}


def target_versions(url: str) -> dict[str, int]:
    with psycopg.connect(psycopg_dsn(url)) as conn:
        rows = conn.execute("select site, version from site_access_versions").fetchall()
    return {site: int(version) for site, version in rows}


class EventCounter:
    """``select count(*) from lock_events`` on one open connection."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(psycopg_dsn(url), autocommit=True)

    def __call__(self) -> int:
        row = self.conn.execute("select count(*) from lock_events").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self.conn.close()


# ------------------------------------------------------------------ mutual TLS (--tls)


@dataclass(frozen=True)
class BenchTls:
    """The run's CA and certificates, made with the project's PKI code (``provisioning.pki``,
    ``protocol.certs``: P-256 keys) as ``denen provision ca init`` and enrollment make them."""

    ca: pki.CaFiles  # ca.crt, server.crt (localhost, 127.0.0.1), cloud.crt (CN cloud), crl.pem
    acl: Path
    gateway_cert: str  # {site} and {gateway}: one certificate per gateway
    gateway_key: str
    raw_cert: Path
    raw_key: Path

    def gateway_files(self, site: str, gateway: str) -> tuple[Path, Path]:
        return (
            Path(self.gateway_cert.format(site=site, gateway=gateway)),
            Path(self.gateway_key.format(site=site, gateway=gateway)),
        )

    def context(self, cert: Path, key: Path) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca.ca_cert))
        ctx.load_cert_chain(cert, key)
        return ctx


def make_pki(directory: Path, shape: FleetShape) -> BenchTls:
    """A CA for this run; a certificate per gateway (CN ``{site}.{gw}``) and one for the raw
    pipe; the ACL as production renders it (``protocol.acl``: the cloud on ``denen/v1/#``,
    each gateway on its own subtree) plus the raw pipe's topic root."""
    t = time.monotonic()
    ca = pki.init_ca(directory / "ca", days=30)
    authority = pki.load_ca(ca)
    now = dt.datetime.now(dt.UTC)
    gateways = [(site_name(shape.prefix, i), shape.gateway) for i in range(1, shape.gateways + 1)]
    out = BenchTls(
        ca,
        directory / "acl",
        str(directory / "gateways" / "{site}.{gateway}.crt"),
        str(directory / "gateways" / "{site}.{gateway}.key"),
        directory / f"{RAW_IDENTITY}.crt",
        directory / f"{RAW_IDENTITY}.key",
    )
    for site, gateway in gateways:
        cert, key = out.gateway_files(site, gateway)
        identity = certs.gateway_identity(site, gateway)
        pki.issue_client_files(authority, identity, cert, key, now=now, days=30)
    pki.issue_client_files(authority, RAW_IDENTITY, out.raw_cert, out.raw_key, now=now, days=30)
    names = [certs.gateway_identity(site, gateway) for site, gateway in gateways]
    acl = render_acl(names) + f"\nuser {RAW_IDENTITY}\ntopic readwrite {RAW_ROOT}/#\n"
    pki.write_public(out.acl, acl.encode())
    print(
        f"TLS: a CA for this run, the broker's certificate (localhost, 127.0.0.1), the "
        f"cloud's (CN {certs.CLOUD_IDENTITY}), one per gateway (CN {gateways[0][0]}."
        f"{gateways[0][1]} …; P-256) and the raw pipe's: {len(gateways) + 3} in "
        f"{time.monotonic() - t:.1f} s; the ACL has a user per gateway, as in production"
    )
    return out


def tls_broker(directory: Path, tls: BenchTls) -> Mosquitto:
    """The production broker config (``provisioning/broker_config.py``: TLS 1.2,
    require_certificate, use_identity_as_username, the CRL, the ACL) on loopback."""
    port = free_port()
    config = BrokerConfig(
        cafile=tls.ca.ca_cert,
        certfile=tls.ca.server_cert,
        keyfile=tls.ca.server_key,
        crlfile=tls.ca.crl,
        acl_file=tls.acl,
        persistence_location=directory,
        port=port,
        bind_address="127.0.0.1",
        max_queued_messages=100_000,  # as the plain bench broker
        log_dest=None,  # Mosquitto() logs to its own file
    )
    return Mosquitto(
        directory, port=port, config=render_config(config), extra_config="max_connections -1\n"
    )


# ------------------------------------------------------------------ the raw pipe


def raw_payloads(shape: FleetShape, per_gateway: int) -> list[tuple[str, bytes]]:
    """The payloads the fleet sends (same model, same sizes), on the raw topic root."""
    gateways = shape.build(time.time(), random.Random(2))
    out = []
    for gw in gateways:
        topic = gw.topic_events.replace("denen/v1", RAW_ROOT, 1)
        out += [(topic, p) for p in gw.lock_events(per_gateway, time.time())]
    return out


def publish_pairs(port: int, pairs: list[tuple[str, bytes]], tls: BenchTls | None = None) -> None:
    """bench/ingest.py's publisher (QoS 1, 100 in flight) over many topics."""
    done = threading.Semaphore(RAW_INFLIGHT)
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    if tls is not None:
        client.tls_set(
            ca_certs=str(tls.ca.ca_cert), certfile=str(tls.raw_cert), keyfile=str(tls.raw_key)
        )
    client.max_inflight_messages_set(RAW_INFLIGHT)
    client.max_queued_messages_set(0)
    client.on_publish = lambda *_: done.release()
    client.connect("127.0.0.1", port)
    client.loop_start()
    for topic, body in pairs:
        done.acquire()
        client.publish(topic, body, qos=1)
    for _ in range(RAW_INFLIGHT):
        done.acquire()
    client.loop_stop()
    client.disconnect()


def run_raw(port: int, pairs: list[tuple[str, bytes]], tls: BenchTls | None = None) -> float:
    """bench/ingest.py's raw subscriber (its own process) counts every message; with
    ``tls`` over mutual TLS."""
    args = ["--raw-subscriber", str(port), f"{RAW_ROOT}/+/+/events", str(len(pairs))]
    if tls is not None:
        args += [str(tls.ca.ca_cert), str(tls.raw_cert), str(tls.raw_key)]
    command = [sys.executable, str(INGEST_SCRIPT), *args]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    if child.stdout.readline().strip() != "ready":
        child.kill()
        return float("nan")
    start = time.perf_counter()
    publish_pairs(port, pairs, tls)
    line = child.stdout.readline().split()
    child.wait(30)
    return float(line[1]) - start if len(line) == 2 else float("nan")


# ------------------------------------------------------------------ the run


@dataclass
class Stack:
    workdir: Path
    db_url: str
    shape: FleetShape
    reconnect_window_s: float
    profile_dir: Path | None = None
    tls: BenchTls | None = None
    broker: Mosquitto = field(init=False)
    cloud: subprocess.Popen[bytes] | None = None
    fleet: subprocess.Popen[str] | None = None
    cloud_http: str = ""
    fleet_http: str = ""
    rss_samples: list[float] = field(default_factory=list)
    _sampling: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        if self.tls is not None:
            self.broker = tls_broker(self.workdir / "broker", self.tls)
            return
        self.broker = Mosquitto(
            self.workdir / "broker",
            # no connection limit; a fleet's sessions and queues must all fit
            extra_config="max_connections -1\n",
        )

    def pids(self) -> dict[str, Callable[[], int | None]]:
        return {
            "cloud": lambda: None if self.cloud is None else self.cloud.pid,
            "fleet": lambda: None if self.fleet is None else self.fleet.pid,
            "broker": lambda: None if self.broker.process is None else self.broker.process.pid,
        }

    @functools.cached_property
    def metrics_token(self) -> str:
        """What the cloud's ``/metrics`` asks for, made once per run."""
        return secrets.token_urlsafe(32)

    def start_cloud(self) -> None:
        http_port = free_port()
        env = dict(
            os.environ,
            DENEN_CLOUD_DATABASE_URL=self.db_url,
            DENEN_CLOUD_MQTT_HOST="127.0.0.1",
            DENEN_CLOUD_MQTT_PORT=str(self.broker.port),
            DENEN_CLOUD_MQTT_CLIENT_ID="bench-cloud",
            DENEN_CLOUD_SECRET_KEY=secrets.token_urlsafe(32),
            DENEN_CLOUD_METRICS_TOKEN=self.metrics_token,
        )
        if self.tls is not None:  # CN cloud: the ACL's user on denen/v1/#
            env |= {
                "DENEN_CLOUD_MQTT_TLS_CA": str(self.tls.ca.ca_cert),
                "DENEN_CLOUD_MQTT_TLS_CERT": str(self.tls.ca.cloud_cert),
                "DENEN_CLOUD_MQTT_TLS_KEY": str(self.tls.ca.cloud_key),
            }
        self.cloud = subprocess.Popen(
            [sys.executable, "-m", "cloud.main", "serve", "--port", str(http_port)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "cloud.log").open("wb"),
        )
        self.cloud_http = f"http://127.0.0.1:{http_port}"
        cloud = self.cloud
        try:
            wait_until(lambda: cloud.poll() is not None or _listening(http_port), 120, 0.1)
        finally:
            if cloud.poll() is not None:
                tail = (self.workdir / "cloud.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the cloud exited ({cloud.returncode}):\n{tail}")

    def cloud_connected(self) -> bool:
        try:
            body = httpx.get(f"{self.cloud_http}/healthz", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return False
        return bool(body.get("mqtt") == "connected")

    def start_fleet(self) -> None:
        s = self.shape
        tls = []
        if self.tls is not None:
            tls = ["--tls-ca", str(self.tls.ca.ca_cert)]
            tls += ["--tls-cert", self.tls.gateway_cert, "--tls-key", self.tls.gateway_key]
        self.fleet = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "firmware_sim.main",
                "--log-level",
                "WARNING",
                "fleet",
                "--gateways",
                str(s.gateways),
                "--broker",
                f"127.0.0.1:{self.broker.port}",
                "--prefix",
                PREFIX,
                "--gateway-id",
                GATEWAY,
                "--locks",
                str(s.locks),
                "--clinic-every",
                str(s.clinic_every),
                "--displays",
                str(s.displays),
                "--reconnect-window-s",
                str(self.reconnect_window_s),
                "--connect-rate",
                "500",
                "--control-port",
                "0",
                "--seed",
                "1",
                *tls,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=(self.workdir / "fleet.log").open("wb"),
            text=True,
        )
        assert self.fleet.stdout is not None
        line = self.fleet.stdout.readline()
        if "control http://" not in line:
            raise RuntimeError(f"the fleet did not start: {line!r}; see {self.workdir}/fleet.log")
        self.fleet_http = line.rsplit("control ", 1)[1].strip().removesuffix("/api/fleet")

    def cloud_metric(self, name: str) -> float:
        """One sample of the cloud's ``/metrics`` (nan when it does not answer)."""
        try:
            scraper = {"Authorization": f"Bearer {self.metrics_token}"}
            text_ = httpx.get(f"{self.cloud_http}/metrics", headers=scraper, timeout=10).text
        except httpx.HTTPError:
            return float("nan")
        for line in text_.splitlines():
            if line.startswith((name + " ", name + "{")):
                return float(line.rsplit(" ", 1)[1])
        return float("nan")

    def fleet_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = httpx.get(f"{self.fleet_http}/api/fleet", timeout=30).json()
        return stats

    def fleet_gateways(self) -> list[dict[str, Any]]:
        body: list[dict[str, Any]] = httpx.get(
            f"{self.fleet_http}/api/fleet/gateways", timeout=60
        ).json()
        return body

    def profiled(self, name: str) -> contextlib.AbstractContextManager[None]:
        """py-spy on the cloud and the fleet while the block runs (``--py-spy DIR``)."""
        pids = {"cloud": self.pids()["cloud"](), "fleet": self.pids()["fleet"]()}
        return profiled(self.profile_dir, name, pids)

    def sample_rss(self) -> float:
        assert self.cloud is not None
        mb = rss_mb(self.cloud.pid)
        self.rss_samples.append(mb)
        return mb

    def sample_rss_every(self, period_s: float) -> None:
        """Sample the cloud's RSS in the background until ``stop()``."""

        def loop() -> None:
            while not self._sampling.wait(period_s):
                with contextlib.suppress(OSError):
                    self.sample_rss()

        threading.Thread(target=loop, name="rss-sampler", daemon=True).start()

    def stop(self) -> None:
        self._sampling.set()
        for proc in (self.fleet, self.cloud):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.broker.stop()


def holding(stats: dict[str, Any], version: int) -> int:
    return sum(n for v, n in stats["access_versions"].items() if int(v) >= version)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


def handshake_phase(stack: Stack, count: int = HANDSHAKES) -> None:
    """``--tls``: TLS handshakes alone, one at a time, no MQTT: what one costs the broker
    (its CPU) and a client (this process's), apart from everything else a connect does."""
    assert stack.tls is not None
    print(f"[0] {count} TLS handshakes alone (the raw pipe's certificate, no MQTT, one at a time)")
    ctx = stack.tls.context(stack.tls.raw_cert, stack.tls.raw_key)
    broker = stack.pids()["broker"]
    version: str | None = None
    b0, c0, t0 = cpu_s(broker()), time.process_time(), time.monotonic()
    for _ in range(count):
        with (
            socket.create_connection(("127.0.0.1", stack.broker.port)) as raw,
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,  # the whole handshake
        ):
            version = tls.version()
    wall = time.monotonic() - t0
    time.sleep(0.2)  # TLS 1.3: the broker checks the client's certificate after it left
    b, c = cpu_s(broker()) - b0, time.process_time() - c0
    print(
        f"    {version}: {wall / count * 1000:.2f} ms each; CPU per handshake: broker "
        f"{b / count * 1000:.2f} ms, client {c / count * 1000:.2f} ms (cpu s resolution "
        f"{1000 / CLK_TCK:.0f} ms over {count})"
    )


def tls_cost(what: str, meter: CpuMeter, count: int, note: str = "") -> None:
    """``--tls``: the phase's broker and fleet CPU per connection made in it (everything a
    connection then does included; a plain run's cpu lines show what TLS adds)."""
    if count <= 0:
        return
    b, f = meter.spent.get("broker", 0.0), meter.spent.get("fleet", 0.0)
    print(
        f"    with TLS: broker {b / count * 1000:.2f} ms, fleet {f / count * 1000:.2f} ms of "
        f"CPU per {what} ({count}) over the whole phase{note}"
    )


def connect_phase(stack: Stack, n: int) -> None:
    print(f"[1] {n} gateways connect (500/s), take their first snapshot")
    with CpuMeter(stack.pids()) as meter:
        t0 = time.monotonic()
        stack.start_fleet()
        stack.sample_rss_every(2.0)
        all_in = wait_until(lambda: stack.fleet_stats()["connected"] >= n, 600, 0.5)
        t_conn = time.monotonic() - t0
        synced = wait_until(lambda: holding(stack.fleet_stats(), 1) >= n, 600, 0.5)
        t_sync = time.monotonic() - t0
        stats = stack.fleet_stats()
        print(
            f"    connected {stats['connected']}/{n} after {t_conn:.1f} s"
            f"{'' if all_in else ' (not all)'}; holding a snapshot {holding(stats, 1)}/{n} "
            f"after {t_sync:.1f} s{'' if synced else ' (not all)'}"
        )
        rss = stack.sample_rss()  # while it takes the births, reports and telemetry
        waited = caught_up(stack.db_url, 1, n * stack.shape.locks)
    print(f"    cloud RSS {rss:.0f} MB; the cloud recorded every lock's applied report {waited}")
    if stack.tls is not None and stack.fleet is not None:
        tls_cost("gateway session", meter, stats["sessions"], "; the fleet's start-up included")
        print(
            f"    fleet RSS {rss_mb(stack.fleet.pid):.0f} MB (asyncio's TLS transport: a 256 KiB "
            "read buffer per connection)"
        )


def steady_phase(stack: Stack, seconds: float) -> None:
    """The fleet connected and quiet but for telemetry: what that costs the cloud."""
    n = stack.shape.gateways
    print(f"[1b] steady state for {seconds:.0f} s: telemetry only ({n / 60:.0f} reports/s)")
    assert stack.cloud is not None
    before = cpu_s(stack.cloud.pid)
    sent = stack.fleet_stats()["telemetry_sent"]
    with CpuMeter(stack.pids()), stack.profiled("steady"):
        time.sleep(seconds)
    share = (cpu_s(stack.cloud.pid) - before) / seconds
    reports = stack.fleet_stats()["telemetry_sent"] - sent
    per = share * seconds / reports * 1000 if reports else float("nan")
    with psycopg.connect(psycopg_dsn(stack.db_url)) as conn:
        row = conn.execute(
            "select count(*) from gateways where last_seen >= extract(epoch from now()) - 75"
        ).fetchone()
    fresh = int(row[0]) if row else 0
    print(
        f"    the cloud used {share:.0%} of a core for {reports / seconds:.0f} telemetry "
        f"reports/s ({per:.1f} ms of CPU each); it has heard {fresh} of {n} gateways in the "
        "last 75 s (fewer: its telemetry backlog grows)"
    )


def dashboard_phase(stack: Stack) -> None:
    """What city ops wait for at this size: the sites overview and its live part (polled
    every 4 s by each open page), the sites API, the alerts inbox; as ``ops``, median of
    3 requests each."""
    n = stack.shape.gateways
    print(f"[1c] the dashboard with {n} sites, as ops")
    password = secrets.token_urlsafe(12)
    with psycopg.connect(psycopg_dsn(stack.db_url)) as conn:
        conn.execute(
            "insert into users (username, password_hash, role, created_at) "
            "values ('bench-ops', %s, 'ops', extract(epoch from now())::int)",
            (hash_password(password),),
        )
    with httpx.Client(base_url=stack.cloud_http, timeout=120) as client:
        login = client.post("/login", data={"username": "bench-ops", "password": password})
        if login.status_code >= 400:
            print(f"    could not log in ({login.status_code}); skipped")
            return
        for path in ("/fleet", "/fleet/live", "/fleet/alerts", "/fleet/audit", "/api/fleet/sites"):
            times, size = [], 0
            for _ in range(3):
                t = time.monotonic()
                # the API takes Basic credentials, the pages the session cookie
                auth = ("bench-ops", password) if path.startswith("/api/") else None
                response = client.get(path, auth=auth)
                times.append(time.monotonic() - t)
                size = len(response.content)
            status = "" if response.status_code == 200 else f" (HTTP {response.status_code})"
            print(
                f"    {path}: {percentile(times, 50) * 1000:.0f} ms, {size / 1024:.0f} KiB{status}"
            )


def ingest_phase(stack: Stack, per_gateway: int) -> float:
    n = stack.shape.gateways
    total = n * per_gateway
    pairs = raw_payloads(stack.shape, per_gateway)
    size = sum(len(p) for _, p in pairs) / len(pairs)
    print(f"[2] ingest: {total} lock events ({per_gateway} per gateway, ~{size:.0f} B each)")
    with CpuMeter(stack.pids()):
        raw_s = run_raw(stack.broker.port, pairs, stack.tls)
    raw_rate = total / raw_s
    over = "" if stack.tls is None else ", mutual TLS"
    print(
        f"    raw  paho -> mosquitto -> paho (100 in flight{over}): {raw_s:.2f} s, "
        f"{raw_rate:,.0f}/s"
    )
    counter = EventCounter(stack.db_url)
    try:
        before = counter()
        with CpuMeter(stack.pids()), stack.profiled("ingest"):
            body = httpx.post(
                f"{stack.fleet_http}/api/fleet/events",
                json={"per_gateway": per_gateway},
                timeout=60,
            ).json()
            started = float(body["started_at"])
            done = wait_until(lambda: counter() - before >= total, INGEST_LIMIT_S, 0.01)
            ours_s = time.monotonic() - started
        stored = counter() - before
        stats = stack.fleet_stats()
    finally:
        counter.close()
    acked_s = (stats["last_event_acked_at"] or started) - started
    ours_rate = stored / ours_s
    print(
        f"    ours fleet -> mosquitto -> cloud -> postgresql: {ours_s:.2f} s, "
        f"{ours_rate:,.0f} events/s stored{'' if done else f' (only {stored} of {total})'}"
    )
    print(f"    (the broker acknowledged the fleet's last event after {acked_s:.2f} s)")
    print(f"    cloud RSS {stack.sample_rss():.0f} MB")
    return ours_rate / raw_rate if raw_rate == raw_rate and raw_rate > 0 else float("nan")


def resync_phase(stack: Stack) -> float:
    n = stack.shape.gateways
    print("[3] broker restart with every snapshot changed while it is down")
    pids = stack.pids()
    t_stop = time.monotonic()
    stack.broker.stop()
    down = time.monotonic() - t_stop
    t_change = time.monotonic()
    versions = change_every_snapshot(stack.db_url)
    targets = target_versions(stack.db_url)
    print(
        f"    broker stopped in {down:.1f} s; new grant and version on {len(targets)} sites "
        f"in {time.monotonic() - t_change:.1f} s (versions now {versions})"
    )
    target = min(targets.values())
    published_before = stack.cloud_metric("denen_mqtt_snapshots_published_total")
    sessions_before = stack.fleet_stats()["sessions"]
    with CpuMeter(pids) as meter, stack.profiled("resync"):
        stack.broker.start()
        t0 = time.monotonic()
        print(f"    broker back after {t0 - t_stop:.1f} s down")
        marks = resync_marks(stack, t0, target, published_before + n)
        stats = stack.fleet_stats()
    if stack.tls is not None:
        tls_cost("gateway reconnection", meter, stats["sessions"] - sessions_before)

    def mark(name: str) -> str:
        return "never" if name not in marks else f"{marks[name]:.1f} s"

    print(
        f"    after the broker was back: cloud reconnected {mark('cloud')}, every gateway "
        f"reconnected {mark('gateways')}, the cloud republished all {n} snapshots "
        f"{mark('published')}, every gateway held its new version {mark('held')}"
    )
    gateways = stack.fleet_gateways()
    behind = [g for g in gateways if g["access_version"] < targets.get(g["site"], target)]
    times: list[float] = [
        float(g["access_taken_at"]) - t0
        for g in gateways
        if g["access_taken_at"] is not None and g["access_version"] >= targets[g["site"]]
    ]
    rss = stack.sample_rss()
    waited = caught_up(stack.db_url, target, n * stack.shape.locks)
    print(f"    cloud RSS {rss:.0f} MB; the cloud recorded every new applied report {waited}")
    if not times:
        return float("inf")
    print(
        f"    new snapshot held: p50 {percentile(times, 50):.1f} s, p90 "
        f"{percentile(times, 90):.1f} s, last {max(times):.1f} s after the broker was back"
    )
    if behind or "held" not in marks:
        print(f"    {len(behind)} of {stats['gateways']} gateways never got their new version")
        return float("inf")
    return max(times)


def resync_marks(stack: Stack, t0: float, target: int, published: float) -> dict[str, float]:
    """Seconds after ``t0`` at which the cloud reconnected, every gateway reconnected, the
    cloud had published ``published`` snapshots in all, every gateway held ``target``."""
    n = stack.shape.gateways
    marks: dict[str, float] = {}
    probes: dict[str, Callable[[], bool]] = {
        "cloud": stack.cloud_connected,
        "gateways": lambda: stack.fleet_stats()["connected"] >= n,
        "published": lambda: (
            stack.cloud_metric("denen_mqtt_snapshots_published_total") >= published
        ),
        "held": lambda: holding(stack.fleet_stats(), target) >= n,
    }
    # /metrics lists every gateway (the cloud's gauges): ask it once a second, not 5 times
    every = {"published": 5}
    deadline = t0 + RESYNC_LIMIT_S
    rounds = 0
    while len(marks) < len(probes) and time.monotonic() < deadline:
        for name, probe in probes.items():
            if name not in marks and rounds % every.get(name, 1) == 0 and probe():
                marks[name] = time.monotonic() - t0
        rounds += 1
        time.sleep(0.2)
    return marks


def check_stored(stack: Stack, expected: int) -> None:
    counter = EventCounter(stack.db_url)
    try:
        stored = counter()
    finally:
        counter.close()
    print(f"    lock events stored: {stored} (sent {expected}; a redelivery stores nothing)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateways", type=int, default=5000)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 200 gateways")
    parser.add_argument("--locks", type=int, default=2, help="locks per site")
    parser.add_argument("--events-per-gateway", type=int, default=0, help="default: 20,000 in all")
    parser.add_argument("--reconnect-window-s", type=float, default=10.0)
    parser.add_argument(
        "--steady-s", type=float, default=60.0, help="telemetry-only phase (one interval)"
    )
    parser.add_argument("--keep", type=Path, help="keep logs here (default: a temp dir)")
    parser.add_argument(
        "--py-spy", type=Path, metavar="DIR", help="profile the cloud and the fleet into DIR"
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="mutual TLS everywhere, as in production (a CA and certificates for the run)",
    )
    args = parser.parse_args()
    n = 200 if args.quick else args.gateways
    per_gateway = args.events_per_gateway or max(1, 20_000 // n)
    shape = FleetShape(n, prefix=PREFIX, gateway=GATEWAY, locks=args.locks)
    fds = raise_fd_limit()
    print(
        f"fleet bench: {n} gateways x {shape.locks} locks (every {shape.clinic_every}th a "
        f"clinic with {shape.displays} displays), telemetry every 60 s; "
        f"open-files limit {fds}"
    )
    if args.tls:
        print(
            "broker: Mosquitto, mutual TLS on loopback (provisioning/broker_config.py as in "
            "production: TLS 1.2 or newer, require_certificate, use_identity_as_username, the "
            "CRL, an ACL user per gateway), persistence on; every client (cloud, each gateway, "
            "the raw pipe) presents its own certificate; cloud: one process on PostgreSQL"
        )
    else:
        print(
            "broker: Mosquitto, plain TCP on loopback (no TLS: its per-connection cost is "
            "a separate question), persistence on; cloud: one process on PostgreSQL"
        )
    with contextlib.ExitStack() as cleanup:
        if args.keep is not None:
            workdir = args.keep
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="fleet-")))
        db_url = cleanup.enter_context(bench_database())
        t = time.monotonic()
        migrate(db_url)
        seed(db_url, shape)
        print(f"seeded {n} sites, {n * shape.locks} locks in {time.monotonic() - t:.1f} s")
        tls = make_pki(workdir / "pki", shape) if args.tls else None
        stack = Stack(workdir, db_url, shape, args.reconnect_window_s, args.py_spy, tls)
        cleanup.callback(stack.stop)
        stack.broker.start()
        stack.start_cloud()
        if not wait_until(stack.cloud_connected, 60, 0.2):
            print("the cloud did not connect to the broker; see cloud.log")
        if tls is not None:
            handshake_phase(stack)
        connect_phase(stack, n)
        steady_phase(stack, args.steady_s)
        dashboard_phase(stack)
        ratio = ingest_phase(stack, per_gateway)
        resync = resync_phase(stack)
        check_stored(stack, n * per_gateway)
        rss = max(stack.rss_samples) if stack.rss_samples else float("nan")
        stats = stack.fleet_stats()
        print(
            f"fleet: {stats['sessions']} sessions, {stats['connections_lost']} connections "
            f"lost, {stats['connect_failures']} failed connects, {stats['telemetry_sent']} "
            f"telemetry reports, {stats['applied_acked']} of {stats['applied_queued']} applied "
            f"reports acknowledged, outbox {stats['outbox_depth']}"
        )
    print(
        f"RESULT gateways={n} ingest_ratio={ratio:.2f} cloud_rss_mb={rss:.0f} resync_s={resync:.1f}"
    )


if __name__ == "__main__":
    main()
