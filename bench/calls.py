"""Staff "call next" → the number on every call-number display, through the real stack.

The stack is :class:`provisioning.local_stack.LocalStack` with its clinic: Mosquitto with
mutual TLS and the per-gateway ACL, the cloud (``denen-cloud serve``), and the clinic's
agent (``denen-agent``), each in its own process, on real time. The ``--displays``
call-number displays (default 20) are the simulator's firmware on real ptys, hosted by this
process so it can note the moment each one takes the new number off its serial line.

Each sample: a patient is checked in at the desk, then the clock starts and a room calls
the next patient (``POST /api/clinic/sites/{site}/rooms/1/call-next``, HTTP Basic as a staff
member's screen sends it); each display's sample ends when its firmware holds that number
for room 1. The patient is then marked in the room and done (not timed), so the room is
free for the next sample. The figure covers the HTTP request, the queue transition and its
commit, the clinic and display states built and published (retained, QoS 1) by the cloud,
the broker, the agent storing the display state and writing ``SHOW_STATE`` to every
display, and each display parsing it.

For scale, the same run measures a raw paho → Mosquitto → paho pipe (the same broker, TLS,
a payload of the display state's size): ``raw_mqtt_p50_ms``.

Last line: ``RESULT call_to_display_p50_ms=<n> call_to_display_p99_ms=<n>``.
Never fails on time; it only measures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from firmware_sim.card_reader.firmware import CardReaderFirmware  # noqa: E402
from firmware_sim.card_reader.pty_host import CardReaderPtyHost  # noqa: E402
from firmware_sim.display.firmware import DisplayFirmware  # noqa: E402
from firmware_sim.display.pty_host import DisplayPtyHost  # noqa: E402
from protocol import messages  # noqa: E402
from protocol.clock import SystemClock  # noqa: E402
from protocol.display_wire import DisplayFrame  # noqa: E402
from protocol.messages import (  # noqa: E402
    DisplayContent,
    DisplayRoomCall,
    DisplayStateData,
    MessageType,
)
from provisioning.broker import free_port  # noqa: E402
from provisioning.display_pairing import pair_display  # noqa: E402
from provisioning.local_stack import CLINIC_SITE, KIOSK_ID, LocalStack  # noqa: E402
from provisioning.pairing import PairingOptions  # noqa: E402

ROOM = "1"


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


class TimedDisplay(DisplayFirmware):
    """The simulator's firmware, noting when room ``ROOM`` first shows ``awaited``."""

    def __init__(self) -> None:
        super().__init__(SystemClock())
        self.awaited: str | None = None
        self.seen_at: float | None = None
        self.seen = threading.Event()

    def expect(self, number: str) -> None:
        self.awaited, self.seen_at = number, None
        self.seen.clear()

    def receive(self, frame: DisplayFrame) -> list[DisplayFrame]:
        out = super().receive(frame)
        if self.awaited is not None and self.seen_at is None:
            for call in self.calls.rooms:
                if call.room == ROOM and call.number == self.awaited:
                    self.seen_at = time.perf_counter()
                    self.seen.set()
        return out


class DeviceHall:
    """The clinic's displays and kiosk reader on ptys, served by an event loop of their own
    in a thread (the stack's set-up blocks; the displays must answer meanwhile)."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.displays = {d: TimedDisplay() for d in stack.display_ids()}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._stack = contextlib.AsyncExitStack()

    def __enter__(self) -> DeviceHall:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._open(), self._loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stack.aclose(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _open(self) -> None:
        (self.stack.workdir / "clinic-devices").mkdir(parents=True, exist_ok=True)
        for display_id, firmware in self.displays.items():
            link = self.stack.display_link(display_id)
            host = DisplayPtyHost(display_id, firmware, link=link)
            await self._stack.enter_async_context(host)
            # paired as a technician does, so the clinic's agent drives it (sealed frames)
            host.pair_button()
            await pair_display(
                display_id,
                f"serial:{link}",
                state_dir=self.stack.clinic_state,
                clock=SystemClock(),
                options=PairingOptions(say=lambda _: None, button_wait_s=10),
            )
        reader = CardReaderPtyHost(
            KIOSK_ID, CardReaderFirmware(SystemClock()), link=self.stack.display_link(KIOSK_ID)
        )
        reader.port.open()
        self._stack.callback(reader.port.close)


@contextlib.contextmanager
def clinic_stack(workdir: Path | None, displays: int) -> Iterator[tuple[LocalStack, DeviceHall]]:
    with contextlib.ExitStack() as cleanup:
        if workdir is None:
            workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        stack = LocalStack(
            workdir / "stack",
            http_port=free_port(),
            sim_port=free_port(),
            clinic=True,
            clinic_displays=displays,
            clinic_devices=False,
        )
        hall = cleanup.enter_context(DeviceHall(stack))
        cleanup.enter_context(stack)
        yield stack, hall


class Bench:
    def __init__(self, stack: LocalStack, hall: DeviceHall) -> None:
        users: Any = stack.clinic_seed["users"]
        name = next(n for n, u in users.items() if u["role"] == "clinic")
        self.staff = (name, str(users[name]["password"]))
        self.stack = stack
        self.hall = hall
        self.cloud = httpx.Client(base_url=stack.cloud_url, timeout=10)
        self.agent = httpx.Client(
            base_url=stack.clinic_url, verify=stack.clinic_trust(), timeout=10
        )
        self.site = f"/api/clinic/sites/{CLINIC_SITE}"

    def close(self) -> None:
        self.cloud.close()
        self.agent.close()

    def wait(self, what: str, probe: Any, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not probe():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not happen within {timeout:.0f} s")
            time.sleep(0.05)

    def wait_ready(self) -> None:
        self.wait(
            "the cloud's MQTT bridge",
            lambda: self.cloud.get("/healthz").json().get("mqtt") == "connected",
        )

        def agent_ready() -> bool:
            status = self.agent.get("/api/status").json()
            return bool(status["connected"] and status["has_day"] and status["running"] == "cloud")

        self.wait("the clinic agent taking the day from the cloud", agent_ready)
        self.wait(
            "every display showing a state",
            lambda: all(d.state_version > 0 for d in self.hall.displays.values()),
        )

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        res = self.cloud.post(f"{self.site}{path}", json=body or {}, auth=self.staff)
        if res.status_code != 200:
            raise RuntimeError(f"POST {path}: {res.status_code} {res.text}")
        out: dict[str, Any] = res.json()
        return out

    def sample(self) -> tuple[str, list[float], float]:
        """One call: the number, each display's milliseconds, the request's own."""
        number = str(self.post("/checkins", {"department": "internal"})["number"])
        for display in self.hall.displays.values():
            display.expect(number)
        t0 = time.perf_counter()
        called = self.post(f"/rooms/{ROOM}/call-next")
        answered = time.perf_counter()
        if number not in str(called):
            raise RuntimeError(f"room {ROOM} called something else: {called}")
        for display_id, display in self.hall.displays.items():
            if not display.seen.wait(10):
                raise RuntimeError(f"{number} never reached {display_id}")
        latencies = [((d.seen_at or t0) - t0) * 1000 for d in self.hall.displays.values()]
        self.post(f"/tickets/{number}/start")
        self.post(f"/tickets/{number}/done")
        return number, latencies, (answered - t0) * 1000


def display_state_size(display_ids: list[str]) -> int:
    """Bytes of a display state like the ones the bench makes the cloud publish."""
    rooms = [DisplayRoomCall(room="1", number="A-012", call_seq=3)]
    upcoming = ["A-013", "A-014", "A-015", "B-004", "B-005"]
    state = DisplayStateData(
        version=1,
        displays=[
            DisplayContent(display_id=d, rooms=rooms, next_numbers=upcoming) for d in display_ids
        ],
    )
    return len(messages.make(MessageType.DISPLAY_STATE, state, ts=time.time()))


def raw_mqtt_p50_ms(stack: LocalStack, payload_size: int, n: int = 50) -> float:
    """paho → Mosquitto → paho in this process, TLS as the cloud: the pipe's own time."""
    assert stack.broker is not None
    host, port = stack.broker.host, stack.broker.port
    ca = stack.ca_dir
    topic = "denen/v1/bench-raw/gw-1/display"
    got: dict[int, float] = {}
    arrived = threading.Event()

    def client(name: str) -> paho.Client:
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=name)
        c.tls_set(str(ca / "ca.crt"), str(ca / "cloud.crt"), str(ca / "cloud.key"))
        c.tls_insecure_set(False)
        c.connect(host, port)
        c.loop_start()
        return c

    def on_message(_c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        got[int.from_bytes(msg.payload[:4], "big")] = time.perf_counter()
        arrived.set()

    sub, pub = client("bench-raw-sub"), client("bench-raw-pub")
    try:
        sub.on_message = on_message
        sub.subscribe(topic, qos=1)
        time.sleep(0.5)
        samples = []
        for i in range(n):
            arrived.clear()
            body = i.to_bytes(4, "big") + b"x" * max(payload_size - 4, 0)
            t0 = time.perf_counter()
            pub.publish(topic, body, qos=1)
            if arrived.wait(5) and i in got:
                samples.append((got[i] - t0) * 1000)
        return percentile(samples, 50) if samples else float("nan")
    finally:
        for c in (sub, pub):
            c.loop_stop()
            c.disconnect()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=40, help="calls (default 40)")
    parser.add_argument("--displays", type=int, default=20, help="displays (default 20)")
    parser.add_argument("--workdir", type=Path, help="keep the stack here (default: temp)")
    args = parser.parse_args(argv)
    ssl.create_default_context()  # fail early if OpenSSL is unusable

    with clinic_stack(args.workdir, args.displays) as (stack, hall):
        bench = Bench(stack, hall)
        try:
            bench.wait_ready()
            samples: list[float] = []
            answers: list[float] = []
            print(f"call next → number on {args.displays} displays, {args.n} calls")
            for i in range(args.n):
                number, latencies, answered_ms = bench.sample()
                samples += latencies
                answers.append(answered_ms)
                print(
                    f"call {i + 1:2d}: {number} on every display after {max(latencies):6.1f} ms "
                    f"(first {min(latencies):5.1f} ms; the request answered in "
                    f"{answered_ms:5.1f} ms)"
                )
            raw = raw_mqtt_p50_ms(stack, display_state_size(stack.display_ids()))
        finally:
            bench.close()

    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    print(
        f"{len(samples)} display samples: min {min(samples):.1f} ms, max {max(samples):.1f} ms;"
        f" request answered p50 {percentile(answers, 50):.1f} ms"
    )
    print(f"raw paho → Mosquitto → paho (TLS, same broker) p50 {raw:.2f} ms")
    print(f"RESULT call_to_display_p50_ms={p50:.0f} call_to_display_p99_ms={p99:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
