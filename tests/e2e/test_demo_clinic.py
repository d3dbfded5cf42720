"""The demo's clinic as `make demo` runs it: separate processes (broker with mutual TLS,
cloud, the clinic's agent enrolled with its own certificate, display and card-reader
simulators with their control pages). A patient taps a card on the reader's page, the
kiosk shows the number, a room calls it and both displays show it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from provisioning.local_stack import CLINIC_SITE, CLINIC_STAFF, KIOSK_ID, LocalStack
from tests.support.stack import running_stack


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    with running_stack(tmp_path / "stack", clinic=True) as running:
        yield running


def eventually(what: str, probe: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.1)
    return value


def test_a_card_tapped_at_the_demo_kiosk_is_called_on_both_displays(stack: LocalStack) -> None:
    with (
        httpx.Client(base_url=stack.cloud_url, timeout=10) as cloud,
        httpx.Client(base_url=stack.clinic_url, verify=stack.clinic_trust(), timeout=10) as agent,
        httpx.Client(base_url=stack.reader_sim_url, timeout=10) as reader,
        httpx.Client(timeout=10) as faces,
    ):
        _walk_through(stack, cloud, agent, reader, faces)


def _walk_through(
    stack: LocalStack,
    cloud: httpx.Client,
    agent: httpx.Client,
    reader: httpx.Client,
    faces: httpx.Client,
) -> None:
    def ready() -> bool:
        status = agent.get("/api/status").json()
        return bool(status["connected"] and status["has_day"])

    eventually("the clinic agent has the cloud's day", ready)
    # the agent's staff page wants the PIN the demo set on it (and printed)
    assert agent.get("/staff").headers["location"].startswith("/staff/login")
    assert agent.post("/api/actions", json={}).status_code == 401
    login = agent.post("/staff/login", data={"name": CLINIC_STAFF, "pin": stack.clinic_staff_pin})
    assert login.status_code == 303, login.text
    assert agent.get("/api/queues/internal").status_code == 200
    patients: Any = stack.clinic_seed["patients"]
    patient = patients[2]  # a walk-in today
    tapped = reader.post(f"/api/readers/{KIOSK_ID}/tap", json={"card": patient["card"]})
    assert tapped.status_code == 200, tapped.text

    def kiosk_number() -> str | None:
        screen = agent.get(f"/api/kiosks/{KIOSK_ID}").json()
        return screen["number"] if screen["kind"] == "ticket" else None

    number = eventually("the kiosk shows a number", kiosk_number)
    assert number == "A-001"
    users: Any = stack.clinic_seed["users"]
    staff = ("clinic", users["clinic"]["api_token"])  # the clinic role: a token on the API
    called = cloud.post(f"/api/clinic/sites/{CLINIC_SITE}/rooms/1/call-next", auth=staff)
    assert called.json()["number"] == number

    def shown_on(n: int) -> bool:
        display = stack.display_ids()[n - 1]
        face = faces.get(f"{stack.display_sim_url(n)}/api/displays/{display}")
        return any(r["room"] == "1" and r["number"] == number for r in face.json()["rooms"])

    eventually(f"{number} on display 1", lambda: shown_on(1))
    eventually(f"{number} on display 2", lambda: shown_on(2))
    # the agent's log names the ticket, never the card
    log = stack.services["clinic-agent"].log_text()
    assert number in log
    assert patient["card"] not in log
    assert "$scrypt$" not in log  # nor the staff PIN's hash
