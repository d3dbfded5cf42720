"""Clinic B's staff import appointments naming clinic A's ids: appointments were keyed on
``(source, external_id)`` only, so B's import moved or cancelled A's appointment, and its
answer ("updated") told B that A had it. Now the site is part of the key."""

from __future__ import annotations

from sqlalchemy import select

from cloud.bootstrap import APPOINTMENT_SOURCE
from cloud.clinic.models import Appointment
from protocol.patient_card import PatientCardNumber
from tests.security.conftest import Clinics


async def test_clinic_b_cannot_move_or_cancel_clinic_a_appointments(clinics: Clinics) -> None:
    hanakos = clinics.a.appointments[0]  # at clinic A in 20 minutes, internal medicine
    stranger = PatientCardNumber.issue(2, 4242).digits
    theirs = {
        "external_id": hanakos.external_id,
        "card": stranger,
        "site": "clinic-b",
        "department": "internal",
        "at": hanakos.at + 3 * 3600,
        "cancelled": True,
    }
    never_used = {**theirs, "external_id": "b-never-used"}
    async with clinics.http() as http:
        staff_b = clinics.as_user("clinic-b")
        r = await http.post(
            "/api/clinic/appointments",
            json={"source": APPOINTMENT_SOURCE, "appointments": [theirs]},
            headers=staff_b,
        )
        fresh = await http.post(
            "/api/clinic/appointments",
            json={"source": APPOINTMENT_SOURCE, "appointments": [never_used]},
            headers=staff_b,
        )
        # the answer for A's id is the one any new id gets: nothing about clinic A
        assert r.status_code == fresh.status_code == 200, r.text
        assert r.json() == fresh.json() == {"created": 1, "updated": 0, "unchanged": 0}

        # clinic A's appointment is where it was: Hanako checks in for it at A's desk
        hanako = clinics.a.patients[0].card
        ticket = await http.post(
            "/api/clinic/sites/clinic-a/checkins",
            json={"card": hanako},
            headers=clinics.as_user("clinic-a"),
        )
    assert ticket.status_code == 200, ticket.text
    assert ticket.json()["appointment_at"] == hanakos.at
    with clinics.app.state.sessions() as session:
        rows = session.scalars(
            select(Appointment).where(Appointment.external_id == hanakos.external_id)
        ).all()
        assert sorted((a.site, a.card_number == hanako, a.cancelled) for a in rows) == [
            ("clinic-a", True, False),
            ("clinic-b", False, True),
        ]
