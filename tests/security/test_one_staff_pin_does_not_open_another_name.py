"""A nurse at the clinic knows her own staff PIN and tries it with a colleague's name, so
that what she does is recorded as his: on the staff form, on the staff API and by
renaming her session cookie. The one shared PIN of old opened the page as nobody in
particular; now each PIN opens only its own name, and each action is logged with who
made it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edge.clinic.staff_access import PinHash
from edge.clinic.web import SESSION_COOKIE
from tests.integration.test_edge_clinic_staff_login import CALL_NEXT, STAFF, log_in, staff_desk

NURSE_PIN, DOCTOR_PIN = "246813", "975310"
STAFF_PINS = {"sato": str(PinHash.make(NURSE_PIN)), "ito": str(PinHash.make(DOCTOR_PIN))}


async def test_a_pin_opens_only_its_own_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with staff_desk(tmp_path, staff=STAFF_PINS) as d, d.client() as nurse:
        as_doctor = await log_in(nurse, NURSE_PIN, name="ito")
        assert as_doctor.status_code == 401
        assert "Wrong name or PIN" in as_doctor.text
        assert SESSION_COOKIE not in nurse.cookies
        api = await nurse.post("/api/actions", json=CALL_NEXT, auth=("ito", NURSE_PIN))
        assert api.status_code == 401
        assert d.room_1() == []

        # her own session, its name changed to his, is no session at all
        assert (await log_in(nurse, NURSE_PIN, name="sato")).status_code == 303
        own = nurse.cookies[SESSION_COOKIE]
        renamed = "ito." + own.partition(".")[2]
        async with d.client(cookies={SESSION_COOKIE: renamed}) as forged:
            assert (await forged.get(STAFF)).status_code == 303
            refused = await forged.post("/staff", data=CALL_NEXT)
            assert refused.headers["location"].startswith("/staff/login")
        assert d.room_1() == []

        called = await nurse.post("/staff", data=CALL_NEXT, follow_redirects=True)
        assert 'data-testid="in-room-A-001"' in called.text
        assert "logged in as sato" in called.text
    assert d.room_1() == ["A-001"]
    assert "staff action call_next internal by sato: A-001" in caplog.text
    assert " by ito" not in caplog.text
