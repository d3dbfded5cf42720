"""Clinic staff rewrite the network's patient registry: any clinic's staff could rename a
patient of every clinic, or change the email the "your turn" notices go to, with no trace.
Now only ops (the hospital systems' integration account) write it, and each change is
recorded: who, when, what; ops read the record."""

from __future__ import annotations

from sqlalchemy import select

from cloud.clinic.models import Patient
from tests.security.conftest import NOW, Clinics


async def test_clinic_staff_cannot_write_the_registry_and_ops_changes_are_audited(
    clinics: Clinics,
) -> None:
    yuki = clinics.a.patients[2]  # her card was issued by another hospital
    hijack = {"patients": [{"card": yuki.card, "name": "Tanaka Yuki", "email": "evil@example.com"}]}
    async with clinics.http() as http:
        for staff in ("clinic-a", "clinic-b"):
            r = await http.post("/api/clinic/patients", json=hijack, headers=clinics.as_user(staff))
            assert r.status_code == 403, (staff, r.text)
            seen = await http.get("/api/clinic/patients/changes", headers=clinics.as_user(staff))
            assert seen.status_code == 403

        clinics.clock.advance(60)
        fix = {
            "patients": [{"card": yuki.card, "name": "Tanaka Yuki", "email": "yuki@example.org"}]
        }
        r = await http.post("/api/clinic/patients", json=fix, headers=clinics.as_user("ops"))
        assert r.json() == {"created": 0, "updated": 1, "unchanged": 0}
        trail = await http.get(
            "/api/clinic/patients/changes",
            params={"card": yuki.card},
            headers=clinics.as_user("ops"),
        )
    assert trail.status_code == 200
    assert trail.json() == [
        {
            "at": NOW + 60,
            "actor": "ops:ops",
            "card": yuki.card,
            "action": "updated",
            "changes": {"email": ["yuki@example.jp", "yuki@example.org"]},
        }
    ]
    with clinics.app.state.sessions() as session:
        row = session.scalars(select(Patient).where(Patient.card_number == yuki.card)).one()
    assert row.email == "yuki@example.org"
