"""A gateway renews its certificate before it expires, on a broker with the production
config: the agent's clock is moved two thirds into the certificate's life, the agent
makes a new key (it stays on the Pi: only a CSR goes out), the cloud signs it over the
gateway's own MQTT link, the agent switches to it and reconnects, and only once the cloud
sees it connected with the new certificate is the old one revoked."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest
from sqlalchemy import select

from cloud.fleet.models import GatewayCertificate
from cloud.gym.access import AccessChanged
from edge.cert_renewal import CertRenewal
from edge.config import load_config
from edge.mqtt_link import MqttLink
from edge.outbox import Outbox
from protocol import certs
from protocol.clock import ManualClock
from protocol.messages import AccessSnapshotData
from provisioning.enroll import site_toml
from tests.support.enrolling_cloud import EnrollingCloud, enrolling_cloud, reloads, until_reloaded
from tests.support.secure_broker import Identity, running_secure_broker

DAY = 24 * 3600


async def eventually(what: str, predicate: Callable[[], bool], limit_s: float = 15) -> None:
    async def poll() -> None:
        while not predicate():  # noqa: ASYNC110 - files, rows and callbacks have no event
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(poll(), limit_s)
    except TimeoutError:
        pytest.fail(f"not within {limit_s}s: {what}")


def rows(cloud: EnrollingCloud) -> dict[str, int | None]:
    """Every certificate of gym-a/gw-1: serial -> revoked_at."""
    with cloud.app.state.sessions() as session:
        found = session.execute(
            select(GatewayCertificate.serial, GatewayCertificate.revoked_at)
        ).all()
    return dict(found)


async def test_the_agent_renews_and_the_old_certificate_goes_once_the_new_one_is_in_use(
    tmp_path: Path,
) -> None:
    # enrolled 250 days ago by the cloud's and the agent's clocks; the broker checks
    # validity by the real one, which is where both clocks are moved to
    now = time.time()
    enrolled_at = now - 250 * DAY
    cloud_clock = ManualClock(enrolled_at)
    with running_secure_broker(tmp_path / "secure", gateways=()) as broker:
        async with enrolling_cloud(tmp_path, broker, cloud_clock) as cloud:
            before = reloads(broker)
            pi = await cloud.enroll(tmp_path / "pi")
            await until_reloaded(broker, before)
            enrolled = reloads(broker)
            old = certs.load_cert(pi.cert.read_bytes())
            kept = tmp_path / "old"  # what a thief copied off the Pi before the renewal
            kept.mkdir()
            (kept / "gateway.crt").write_bytes(pi.cert.read_bytes())
            (kept / "gateway.key").write_bytes(pi.key.read_bytes())
            text = site_toml(
                "gym-a",
                "gw-1",
                state_dir=tmp_path / "state",
                host="localhost",
                port=broker.port,
                out=tmp_path / "pi",
            )
            (tmp_path / "pi" / "site.toml").write_text(text)
            config = load_config(tmp_path / "pi" / "site.toml")
            assert config.mqtt.tls is not None

            agent_clock = ManualClock(enrolled_at)
            renewal = CertRenewal(config.mqtt.tls, "gym-a", "gw-1", agent_clock, check_every_s=0.5)
            old_serial = format(old.serial_number, "x")
            revoked_when_it_arrived: list[int | None] = []

            def take(payload: bytes) -> bool:
                revoked_when_it_arrived.append(rows(cloud)[old_serial])
                return renewal.take(payload)

            snapshots: list[AccessSnapshotData] = []
            outbox = Outbox(tmp_path / "outbox.db")
            outbox.open()
            link = MqttLink(
                config,
                outbox=outbox,
                clock=agent_clock,
                on_snapshot=snapshots.append,
                on_certificate=take,
                connect_messages=renewal.connect_messages,
            )
            running = asyncio.create_task(link.run())
            asking = asyncio.create_task(
                renewal.run(lambda topic, payload: link.publish_now(topic, payload, qos=1))
            )
            try:
                await eventually("the agent connected", link.connected.is_set)
                assert not renewal.due()
                agent_clock.advance(200 * DAY)  # 55 % of 365 days: not yet
                assert not renewal.due()
                cloud_clock.advance(250 * DAY)
                agent_clock.advance(50 * DAY)  # 68 %: past two thirds
                await eventually("the agent switched certificates", lambda: renewal.renewed == 1)
                await eventually("and reconnected with it", lambda: link.connections == 2)
                await eventually(
                    "the cloud revoked the old certificate",
                    lambda: rows(cloud)[old_serial] is not None,
                )

                # the old certificate still worked while the new one was on its way
                assert revoked_when_it_arrived[0] is None
                new = certs.load_cert(pi.cert.read_bytes())
                new_serial = format(new.serial_number, "x")
                assert new.serial_number != old.serial_number
                assert rows(cloud)[new_serial] is None
                assert certs.common_name(new.subject) != certs.common_name(old.subject)
                key = certs.load_key(pi.key.read_bytes())
                assert new.public_key() == key.public_key()  # the key made on the Pi
                assert key.public_key() != old.public_key()
                assert pi.key.stat().st_mode & 0o777 == 0o600
                assert not renewal.next_key_path.exists()

                # reloaded twice: the new certificate's ACL, then the old one's revocation
                await eventually("the broker reloaded", lambda: reloads(broker) >= enrolled + 2)
                acl = broker.acl.read_text()
                assert f"user {certs.common_name(new.subject)}\n" in acl
                assert f"user {certs.common_name(old.subject)}\n" not in acl
                with pytest.raises(aiomqtt.MqttError):  # the old pair is refused now
                    async with broker.client(
                        Identity(
                            certs.common_name(old.subject),
                            kept / "gateway.crt",
                            kept / "gateway.key",
                        ),
                        "copied-pi",
                        timeout=3,
                    ):
                        pass

                cloud.app.state.bus.publish(AccessChanged("gym-a", "gw-1"))
                await eventually("the renewed link still works", lambda: bool(snapshots))
                assert link.connected.is_set()
            finally:
                asking.cancel()
                link.stop()
                await running
                outbox.close()
