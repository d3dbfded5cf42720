"""Ops' remote unlock on the fleet pages opens a public building's door: a request forged
from another site, riding on a logged-in ops browser, must not send it."""

from __future__ import annotations

from cloud.fleet.services import FleetServices
from protocol.messages import GatewayState, LockTelemetry, StatusData, TelemetryData
from tests.security.conftest import Cloud
from tests.support.cloud import log_in, page_token

UNLOCK = {"gateway": "gw-1", "verb": "unlock", "lock_id": "gym-a-1", "reason": "fire brigade"}


async def test_a_forged_unlock_sends_nothing(cloud: Cloud) -> None:
    fleet: FleetServices = cloud.app.state.fleet.services
    # the site's gateway is online and reports its lock
    fleet.health.record_status("gym-a", "gw-1", StatusData(state=GatewayState.ONLINE))
    lock = LockTelemetry(lock_id="gym-a-1", reachable=True, battery_pct=90)
    report = TelemetryData(
        uptime_s=100, outbox_depth=0, frames_dropped=0, time_trusted=True, locks=[lock]
    )
    fleet.health.record_telemetry("gym-a", "gw-1", report)
    ops = cloud.seed.ops
    async with cloud.browser() as browser:
        await log_in(browser, cloud.app.state.clock, ops.username, ops.password)
        page = (await browser.get("/fleet/sites/gym-a")).text
        assert 'data-testid="send-unlock"' in page
        token = page_token(page)
        del browser.headers["X-CSRF-Token"], browser.headers["Origin"]
        for headers, form in (
            ({"Origin": "https://evil.example"}, UNLOCK),
            ({"Origin": "http://cloud"}, UNLOCK),  # no token
            ({}, {**UNLOCK, "csrf_token": token}),  # no origin
        ):
            r = await browser.post("/fleet/sites/gym-a/commands", data=form, headers=headers)
            assert r.status_code == 403, headers
        assert fleet.commands.commands(None) == []
        # from the page itself it goes out
        r = await browser.post(
            "/fleet/sites/gym-a/commands",
            data={**UNLOCK, "csrf_token": token},
            headers={"Origin": "http://cloud"},
        )
        assert r.status_code == 303
    assert [c.verb for c in fleet.commands.commands(None)] == ["unlock"]
