"""Attack: a name that a spreadsheet runs as a formula (OWASP "CSV injection"). A name
like ``=HYPERLINK(...)`` typed into the cloud reaches the city's spreadsheet through a CSV
export; every export writes such a cell as text (a leading single quote)."""

from __future__ import annotations

import csv
import io

from tests.security.conftest import Cloud
from tests.support.cloud import log_in

FORMULA = '=HYPERLINK("http://evil.example/","Your PIN")'


def _clinic(department_name: str) -> dict[str, object]:
    return {
        "site": "clinic-x",
        "gateway": "gw-1",
        "name": "Clinic X",
        "departments": [
            {"slug": "internal", "name": department_name, "prefix": "A", "rooms": ["1"]},
            {
                "slug": "pediatrics",
                "name": "@SUM(1+1)*cmd|' /C calc'!A0",
                "prefix": "B",
                "rooms": ["2"],
            },
        ],
    }


async def test_clinic_figures_csv_neutralises_a_formula_department_name(cloud: Cloud) -> None:
    r = await cloud.http.post(
        "/api/clinic/sites", json=_clinic(FORMULA), headers=cloud.as_user("ops")
    )
    assert r.status_code == 201, r.text
    await log_in(cloud.http, cloud.app.state.clock, "ops", cloud.seed.users["ops"].password)
    r = await cloud.http.get("/clinic/clinic-x/figures.csv", params={"on": "2027-01-15"})
    assert r.status_code == 200, r.text
    names = {row["department"]: row["name"] for row in csv.DictReader(io.StringIO(r.text))}
    assert names == {
        "internal": "'" + FORMULA,
        "pediatrics": "'@SUM(1+1)*cmd|' /C calc'!A0",
    }
