"""Approval → PIN usable on the lock, online, through the real stack.

The stack is :class:`provisioning.local_stack.LocalStack`: Mosquitto with mutual TLS and the
per-gateway ACL, the cloud (``denen-cloud serve``), the simulated keypad lock on a pty with
its control API, and the site's agent, each in its own process, on real time.

Each sample: a citizen books a court (one court per booking, so every window is open now
and the PIN can be tried at once; the lock is the gym's entrance, which every court's PIN
opens), the clock starts, the manager approves (``POST /api/reservations/{id}/approve``),
and the clock stops when the lock holds one more PIN (the simulator's control API,
``GET /api/locks/{id}``: ``slots_used``). The PIN is then typed on the keypad: the door
must open, which proves the PIN is usable — and no PIN is ever typed before it is loaded,
so no wrong entry counts towards the keypad lockout.

The figure covers: the approval transaction, the snapshot built and published (retained,
QoS 1) by the cloud's bridge, the broker, the agent storing it and deciding to load at once
(the window starts before the lock's next 12-hour sync), and the slot diff written to the
lock and read back. The lock control API is polled every ``--poll-ms``; that is the
resolution of each sample.

Last line: ``RESULT approve_to_lock_p50_ms=<n> approve_to_lock_p99_ms=<n>``.
Never fails on time; it only measures.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from provisioning.broker import free_port  # noqa: E402
from provisioning.local_stack import LOCK_ID, LocalStack  # noqa: E402

MINUTE = 60
# The lock holds 32 slots; pairing leaves none behind. Keep a margin.
MAX_BOOKINGS = 30


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of 30 samples is the largest)."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


@contextlib.contextmanager
def stack_in(workdir: Path | None) -> Iterator[LocalStack]:
    with contextlib.ExitStack() as cleanup:
        if workdir is None:
            workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        # auto-lock after 1 s: each sample waits for the relock before the next PIN
        stack = LocalStack(
            workdir / "stack", http_port=free_port(), sim_port=free_port(), auto_lock_s=1
        )
        with stack:
            yield stack


class Bench:
    def __init__(self, stack: LocalStack, poll_s: float) -> None:
        users: Any = stack.seed["users"]
        self.manager = ("manager", str(users["manager"]["password"]))
        self.facility_id = int(str(stack.seed["facility_id"]))
        self.cloud = httpx.Client(base_url=stack.cloud_url, timeout=10)
        self.sim = httpx.Client(base_url=stack.sim_url, timeout=10)
        self.poll_s = poll_s

    def close(self) -> None:
        self.cloud.close()
        self.sim.close()

    def lock(self) -> dict[str, Any]:
        view: dict[str, Any] = self.sim.get(f"/api/locks/{LOCK_ID}").json()
        return view

    def wait(self, what: str, probe: Any, timeout: float = 30.0) -> float:
        """Poll until ``probe()``; return the monotonic time it first held."""
        deadline = time.perf_counter() + timeout
        while True:
            if probe():
                return time.perf_counter()
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{what} did not happen within {timeout:.0f} s")
            time.sleep(self.poll_s)

    def wait_ready(self) -> None:
        """The agent is connected and has synced the lock (its clock set)."""
        self.wait("the lock's first sync", lambda: self.lock()["clock_set"], timeout=60)
        self.wait(
            "the cloud's MQTT bridge",
            lambda: self.cloud.get("/healthz").json().get("mqtt") == "connected",
            timeout=60,
        )

    def add_courts(self, n: int) -> list[int]:
        rooms = []
        for i in range(n):
            res = self.cloud.post(
                f"/api/facilities/{self.facility_id}/rooms",
                json={"name": f"Bench court {i + 1}"},
                auth=self.manager,
            )
            res.raise_for_status()
            rooms.append(int(res.json()["id"]))
        return rooms

    def book(self, room_id: int, name: str, start: int, end: int) -> tuple[str, str]:
        res = self.cloud.post(
            "/api/reservations",
            json={
                "room_id": room_id,
                "name": name,
                "email": f"{name}@example.jp",
                "start": start,
                "end": end,
            },
        )
        if res.status_code != 201:
            raise RuntimeError(f"booking refused: {res.status_code} {res.text}")
        body = res.json()
        return str(body["id"]), str(body["access_token"])

    def sample(self, room_id: int, i: int, start: int, end: int) -> tuple[float, float]:
        """One booking approved; milliseconds until the approval answered and until the
        lock holds its PIN."""
        reservation, token = self.book(room_id, f"bench{i:02d}", start, end)
        before = self.lock()["slots_used"]
        t0 = time.perf_counter()
        res = self.cloud.post(f"/api/reservations/{reservation}/approve", auth=self.manager)
        if res.status_code != 200:
            raise RuntimeError(f"approval refused: {res.status_code} {res.text}")
        answered = time.perf_counter()
        t1 = self.wait("the PIN reaching the lock", lambda: self.lock()["slots_used"] > before)
        # the proof: the citizen's PIN opens the door (it is loaded, so never a wrong entry)
        pin = self.cloud.get(f"/api/reservations/{reservation}", params={"token": token}).json()[
            "pin"
        ]
        opened = self.sim.post(f"/api/locks/{LOCK_ID}/keys", json={"keys": f"{pin}#"}).json()
        if opened["display"] != "OPEN":
            raise RuntimeError(f"booking {i}: the loaded PIN did not open the door: {opened}")
        self.wait("the door relocking", lambda: self.lock()["locked"], timeout=10)
        return (answered - t0) * 1000, (t1 - t0) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=30, help=f"bookings (at most {MAX_BOOKINGS})")
    parser.add_argument("--poll-ms", type=float, default=2.0, help="lock API poll interval")
    parser.add_argument("--workdir", type=Path, help="keep the stack here (default: temp)")
    args = parser.parse_args(argv)
    n = min(max(args.n, 1), MAX_BOOKINGS)

    with stack_in(args.workdir) as stack:
        bench = Bench(stack, args.poll_ms / 1000)
        try:
            bench.wait_ready()
            courts = bench.add_courts(n)
            now = int(time.time())
            # starts in 10 minutes, on the minute: with the 15-minute margin it opens now
            start = (now + 10 * MINUTE) // MINUTE * MINUTE
            end = start + 60 * MINUTE
            samples = []
            print(f"approve → PIN on the lock, {n} bookings, polling every {args.poll_ms} ms")
            for i, room in enumerate(courts):
                answered_ms, ms = bench.sample(room, i, start, end)
                samples.append(ms)
                print(
                    f"sample {i + 1:2d}: PIN on the lock after {ms:6.1f} ms "
                    f"(approval answered after {answered_ms:5.1f} ms)"
                )
        finally:
            bench.close()

    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    print(f"min {min(samples):.1f} ms, max {max(samples):.1f} ms, mean {sum(samples) / n:.1f} ms")
    print(f"RESULT approve_to_lock_p50_ms={p50:.0f} approve_to_lock_p99_ms={p99:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
