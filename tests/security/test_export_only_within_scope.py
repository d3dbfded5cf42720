"""Attack: someone who may not reads or deletes another person's data through the
personal-data requests. A citizen's bookings are ops' to export or erase (a facility
manager or clinic staff get 403, nobody signed in 401); a patient's check-ins are their
clinic's staff's and ops' (another clinic's staff get 404, as for a clinic that does not
exist, and nothing is deleted); the log of requests shows clinic staff only their own
clinics' entries."""

from __future__ import annotations

from cloud.bootstrap import ClinicSeed, seed_clinic
from cloud.core.models import Role
from tests.security.conftest import Cloud
from tests.support.cloud import basic

BOOKINGS = "/api/personal-data/bookings"
PATIENTS_A = "/api/clinic/sites/clinic-a/patients"


def _clinics(cloud: Cloud) -> tuple[ClinicSeed, ClinicSeed]:
    clock = cloud.app.state.clock
    with cloud.app.state.sessions.begin() as session:
        a = seed_clinic(session, users={"staff-a": Role.CLINIC}, department="health-a", clock=clock)
        b = seed_clinic(
            session,
            site="clinic-b",
            displays=("clinic-b-disp-1",),
            users={"staff-b": Role.CLINIC},
            department="health-b",
            clock=clock,
        )
    return a, b


async def test_only_ops_read_or_erase_a_citizens_bookings(cloud: Cloud) -> None:
    a, _ = _clinics(cloud)
    staff = basic("staff-a", a.users["staff-a"].api_token)
    body = {"email": "taro@example.jp"}
    assert (await cloud.http.post(f"{BOOKINGS}/export", json=body)).status_code == 401
    for who in (cloud.as_user("manager"), staff):
        for path in ("export", "erasure-preview"):
            r = await cloud.http.post(f"{BOOKINGS}/{path}", json=body, headers=who)
            assert r.status_code == 403, (path, r.text)
        r = await cloud.http.post(
            f"{BOOKINGS}/erase", json={**body, "expected_bookings": 1}, headers=who
        )
        assert r.status_code == 403
    ok = await cloud.http.post(f"{BOOKINGS}/export", json=body, headers=cloud.as_user("ops"))
    assert (ok.status_code, ok.json()["bookings"]) == (200, [])


async def test_a_clinics_staff_cannot_export_or_erase_another_clinics_patient(
    cloud: Cloud,
) -> None:
    a, b = _clinics(cloud)
    card = a.patients[0].card  # with an appointment at clinic-a today
    own = basic("staff-a", a.users["staff-a"].api_token)
    other = basic("staff-b", b.users["staff-b"].api_token)

    for path, body in (
        ("export", {"card": card}),
        ("erasure-preview", {"card": card}),
        ("erase", {"card": card, "expected_tickets": 0, "expected_appointments": 1}),
    ):
        r = await cloud.http.post(f"{PATIENTS_A}/{path}", json=body, headers=other)
        assert (r.status_code, r.json()["detail"]) == (
            404,
            "there is no clinic at site 'clinic-a'",
        ), path
        r = await cloud.http.post(
            f"{PATIENTS_A}/{path}", json=body, headers=cloud.as_user("manager")
        )
        assert r.status_code == 403, path

    mine = await cloud.http.post(f"{PATIENTS_A}/export", json={"card": card}, headers=own)
    assert mine.status_code == 200, mine.text
    assert mine.json()["patient"]["name"] == a.patients[0].name
    assert len(mine.json()["appointments"]) == 1  # nothing was erased by the other clinic
    by_ops = await cloud.http.post(
        f"{PATIENTS_A}/export", json={"card": card}, headers=cloud.as_user("ops")
    )
    assert by_ops.status_code == 200

    theirs = (await cloud.http.get("/api/personal-data/log", headers=other)).json()
    assert theirs == []
    ours = (await cloud.http.get("/api/personal-data/log", headers=own)).json()
    assert {(e["site"], e["action"]) for e in ours} == {("clinic-a", "export")}
    manager = await cloud.http.get("/api/personal-data/log", headers=cloud.as_user("manager"))
    assert manager.status_code == 403
