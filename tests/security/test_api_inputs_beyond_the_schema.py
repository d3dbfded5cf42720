"""Inputs the OpenAPI schema does not allow are refused with a 422 that names the field,
never a 500 from deep in a query or a value silently read as something else."""

from __future__ import annotations

from tests.security.conftest import Cloud


async def test_an_id_too_large_for_the_database_is_a_422_not_a_500(cloud: Cloud) -> None:
    for path in ("/api/fleet/rollouts/99999999999999999999999/pause", "/api/fleet/alerts/0/ack"):
        r = await cloud.http.post(path, headers=cloud.as_user("ops"))
        assert r.status_code == 422, (path, r.text)
        assert "path." in r.json()["detail"]


async def test_zero_is_not_a_day(cloud: Cloud) -> None:
    """pydantic alone reads 0 as 1970-01-01: closing and reopening "day 0" answered 200."""
    fid = cloud.seed.facility_id
    r = await cloud.http.delete(
        f"/api/facilities/{fid}/closed-days/0", headers=cloud.as_user("manager")
    )
    assert r.status_code == 422, r.text
    assert "YYYY-MM-DD" in r.json()["detail"]


async def test_true_is_not_a_number_of_minutes(cloud: Cloud) -> None:
    fid = cloud.seed.facility_id
    rules = await cloud.http.get(f"/api/facilities/{fid}/rules", headers=cloud.as_user("manager"))
    body = {**rules.json(), "lead_time_minutes": False}
    r = await cloud.http.put(
        f"/api/facilities/{fid}/rules", json=body, headers=cloud.as_user("manager")
    )
    assert r.status_code == 422, r.text
    assert "lead_time_minutes" in r.json()["detail"]
    after = await cloud.http.get(f"/api/facilities/{fid}/rules", headers=cloud.as_user("manager"))
    assert after.json() == rules.json()


async def test_a_misspelt_or_repeated_query_parameter_is_named(cloud: Cloud) -> None:
    ops = cloud.as_user("ops")
    typo = await cloud.http.get("/api/fleet/alerts?stat=open", headers=ops)
    assert typo.status_code == 422, typo.text
    assert "query.stat" in typo.json()["detail"]
    assert "state" in typo.json()["detail"]
    twice = await cloud.http.get("/api/fleet/commands?site=gym-a&site=gym-b", headers=ops)
    assert twice.status_code == 422, twice.text
    assert "give this once" in twice.json()["detail"]
    fine = await cloud.http.get("/api/fleet/commands?site=gym-a", headers=ops)
    assert fine.status_code == 200, fine.text


async def test_a_method_a_path_does_not_take_names_every_method_it_does(cloud: Cloud) -> None:
    r = await cloud.http.delete("/api/reservations", headers=cloud.as_user("manager"))
    assert r.status_code == 405
    assert set(r.headers["allow"].split(", ")) == {"GET", "POST"}
