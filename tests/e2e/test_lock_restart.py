"""A lock that restarts counts its events from 1 again: its later unlocks must still reach
the audit, each once. Real parts, as the demo runs them: the lock simulator restarted is a
lock whose battery was changed; the whole stack restarted on its data dir is the demo
stopped and started again."""

from __future__ import annotations

import time
from pathlib import Path

from provisioning.broker import wait_for_port
from tests.e2e.test_booking_to_door import HOUR, Walkthrough, eventually
from tests.support.stack import running_stack


def test_unlocks_before_and_after_a_lock_reboot_and_a_demo_restart_are_audited_once(
    tmp_path: Path,
) -> None:
    workdir = tmp_path / "stack"
    with running_stack(workdir) as stack:
        w = Walkthrough(stack)
        try:
            now = int(time.time())
            # one booking, two visits: the group steps out and comes back with the same PIN
            pin = w.book_and_approve("sato", now + 300, now + HOUR)
            w.wait_for_slots(1)
            assert w.type(pin + "#")["display"] == "OPEN"
            (first,) = eventually(lambda: w.audit_kinds("unlocked"), "the first unlock audited")
            assert first["who"] == "sato"
            eventually(lambda: w.lock_view()["events_pending"] == 0, "the lock handing over")

            # the battery is changed: the lock starts again, without its RAM (events, PINs)
            stack.services["lock"].stop()
            stack.services["lock"].start()
            wait_for_port(stack.sim_port, timeout=30)
            w.wait_for_slots(1)  # the agent loads the PIN again
        finally:
            w.close()

    # the demo is stopped and started again on its data
    with running_stack(workdir) as stack:
        w = Walkthrough(stack)
        try:
            w.wait_for_slots(1)
            assert w.type(pin + "#")["display"] == "OPEN"
            eventually(
                lambda: len(w.audit_kinds("unlocked")) >= 2,
                "the unlock after the restarts audited",
                timeout=60,
            )
            eventually(lambda: w.lock_view()["events_pending"] == 0, "the lock handing over")
            time.sleep(2)  # anything delivered twice would be here by now
            unlocks = w.audit_kinds("unlocked")
        finally:
            w.close()

    assert [e["who"] for e in unlocks] == ["sato", "sato"]
    later, earlier = unlocks  # newest first
    assert later["boot"] != earlier["boot"]
    # the restarted lock numbered its unlock no higher than the first one: under the old key
    # (lock_id, seq) it would have been dropped as a duplicate
    assert later["seq"] <= earlier["seq"]
