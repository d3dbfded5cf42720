"""How fast the cloud ingests lock events durably, against a raw MQTT pipe, in one run.

ours: a paho publisher (QoS 1, pipelined) → a private Mosquitto → the cloud's MQTT bridge
      (``denen-cloud serve`` in its own process) → stored and de-duplicated in SQLite.
      Timed from the first publish until the last event is in the database.
raw:  the same publisher and payloads → the same broker → a paho subscriber that only
      counts. Timed from the first publish until the last message arrived.

Last line: ``RESULT ingest_ratio=<ours/raw> ours_per_s=<n> raw_per_s=<n>``.
Never fails on time; it only measures.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from protocol import messages, topics  # noqa: E402
from protocol.messages import LockEventData, LockEventKind, MessageType  # noqa: E402
from provisioning.broker import Mosquitto, free_port, wait_for_port  # noqa: E402

INFLIGHT = 100


def payloads(n: int, lock_id: str = "bench-lock") -> list[bytes]:
    out = []
    for seq in range(1, n + 1):
        data = LockEventData(
            lock_id=lock_id, seq=seq, lock_ts=1_800_000_000 + seq, kind=LockEventKind.UNLOCKED
        )
        out.append(messages.make(MessageType.LOCK_EVENT, data, ts=1_800_000_000 + seq))
    return out


def publish_all(port: int, topic: str, bodies: list[bytes]) -> None:
    """QoS 1 with up to INFLIGHT messages unacknowledged, as a busy gateway fleet would."""
    done = threading.Semaphore(INFLIGHT)
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    client.max_inflight_messages_set(INFLIGHT)
    client.max_queued_messages_set(0)
    client.on_publish = lambda *_: done.release()
    client.connect("127.0.0.1", port)
    client.loop_start()
    for body in bodies:
        done.acquire()
        client.publish(topic, body, qos=1)
    for _ in range(INFLIGHT):
        done.acquire()
    client.loop_stop()
    client.disconnect()


def raw_subscriber(port: int, topic: str, n: int, tls: list[str] | None = None) -> None:
    """Child process: count ``n`` messages, then print the monotonic time of the last
    (``tls``: CA, certificate and key files, for a broker with mutual TLS)."""
    got = 0
    all_in = threading.Event()
    subscribed = threading.Event()

    def on_message(*_: object) -> None:
        nonlocal got
        got += 1
        if got == n:
            all_in.set()

    sub = paho.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    if tls:
        sub.tls_set(ca_certs=tls[0], certfile=tls[1], keyfile=tls[2])
    sub.on_message = on_message
    sub.on_subscribe = lambda *_: subscribed.set()
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    sub.subscribe(topic, qos=1)
    subscribed.wait(10)
    print("ready", flush=True)
    all_in.wait(300)
    print(f"done {time.perf_counter()}", flush=True)  # CLOCK_MONOTONIC: same in every process
    sub.loop_stop()
    sub.disconnect()


def run_raw(port: int, topic: str, bodies: list[bytes]) -> float:
    """The subscriber runs in its own process, as the cloud does, so both pipes get the
    same number of cores."""
    child = subprocess.Popen(
        [sys.executable, __file__, "--raw-subscriber", str(port), topic, str(len(bodies))],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    start = time.perf_counter()
    publish_all(port, topic, bodies)
    end = float(child.stdout.readline().split()[1])
    child.wait(30)
    return end - start


def stored_events(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return int(conn.execute("select count(*) from lock_events").fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # not migrated yet


def run_ours(port: int, workdir: Path, topic: str, bodies: list[bytes]) -> tuple[float, int]:
    db = workdir / "cloud.db"
    http_port = free_port()
    env = dict(
        os.environ,
        DENEN_CLOUD_DATABASE_URL=f"sqlite:///{db}",
        DENEN_CLOUD_MQTT_HOST="127.0.0.1",
        DENEN_CLOUD_MQTT_PORT=str(port),
        DENEN_CLOUD_MQTT_CLIENT_ID="bench-cloud",
        DENEN_CLOUD_SECRET_KEY=os.urandom(16).hex(),
        DENEN_CLOUD_METRICS_TOKEN=os.urandom(16).hex(),
    )
    cloud = subprocess.Popen(
        [sys.executable, "-m", "cloud.main", "serve", "--port", str(http_port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "cloud.log", "wb"),  # noqa: SIM115
    )
    try:
        wait_for_port(http_port, timeout=30)
        time.sleep(1.0)  # let the bridge subscribe
        # publish in the background and stop the clock at the last event stored, as the raw
        # side stops it at the last message received: the publisher's teardown (paho's
        # loop_stop() sits out its 1 s select timeout) is not ingest time
        publisher = threading.Thread(target=publish_all, args=(port, topic, bodies))
        start = time.perf_counter()
        publisher.start()
        deadline = time.monotonic() + 300
        while stored_events(db) < len(bodies) and time.monotonic() < deadline:
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
        publisher.join()
        # the same events again: a redelivery must store nothing new
        publish_all(port, topic, bodies[: len(bodies) // 10])
        time.sleep(1.0)
        return elapsed, stored_events(db)
    finally:
        cloud.terminate()
        cloud.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--events", type=int, default=20000)
    # the raw pipe's subscriber: PORT TOPIC N [CA CERT KEY] (bench/fleet.py --tls)
    parser.add_argument("--raw-subscriber", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_subscriber:
        port, topic_name, count, *tls = args.raw_subscriber
        raw_subscriber(int(port), topic_name, int(count), tls)
        return
    bodies = payloads(args.events)
    topic = topics.events("bench-site", "bench-gw")
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp) / "broker")
        broker.start()
        try:
            raw_s = run_raw(broker.port, topic, bodies)
            ours_s, stored = run_ours(broker.port, Path(tmp), topic, bodies)
        finally:
            broker.stop()
    raw_rate = len(bodies) / raw_s
    ours_rate = len(bodies) / ours_s
    size = len(bodies[0])
    print(f"events={len(bodies)} payload_bytes={size} inflight={INFLIGHT}")
    print(f"raw  paho->mosquitto->paho: {raw_s:.2f} s, {raw_rate:,.0f} msg/s")
    print(f"ours paho->mosquitto->cloud->sqlite: {ours_s:.2f} s, {ours_rate:,.0f} events/s")
    print(f"stored rows after 10% redelivery: {stored} (expected {len(bodies)})")
    ratio = ours_rate / raw_rate
    print(f"RESULT ingest_ratio={ratio:.2f} ours_per_s={ours_rate:.0f} raw_per_s={raw_rate:.0f}")


if __name__ == "__main__":
    main()
