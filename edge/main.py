"""``denen-agent --config site.toml``: the composition root of the edge agent.
(``denen-agent clinic set-staff-pin``: :mod:`edge.clinic.staff_cli`.)

Builds settings → store and outbox → transports → coordinators → (at a clinic) desk,
kiosk readers and pages → config twin → MQTT link → agent → fleet commands and
``/metrics``, and runs until SIGTERM or SIGINT, logging to stderr. On a clean stop the
agent publishes its retained ``offline`` status before disconnecting. Exit status: 0 after
a stop, 75 (:data:`edge.commands.EXIT_RESTART`) when a fleet command asked for a restart,
1 on a fatal error, 2 for a bad site file.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import signal
import sys
from importlib import metadata

from edge.agent import AccessService, Agent, DisplayService
from edge.agent_config import ConfigTwin
from edge.cert_renewal import CertRenewal
from edge.clinic import staff_cli
from edge.clinic.day_store import DayStore
from edge.clinic.desk import ClinicDesk
from edge.clinic.kiosk import KioskReader
from edge.clinic.web import ClinicPages
from edge.commands import CommandService
from edge.config import SiteConfig, load_config
from edge.devices.display_coordinator import DisplayCoordinator, open_display
from edge.devices.lock_coordinator import LockCoordinator
from edge.display_keys import DisplayKeyStore
from edge.errors import ConfigError, EdgeError
from edge.lock_keys import LockKeyStore
from edge.log_ring import LogRing
from edge.metrics import MetricsServer, agent_registry, render_registry
from edge.mqtt_link import MqttLink
from edge.outbox import Outbox
from edge.store import Store
from edge.sync_schedule import SyncSchedule
from edge.transports import BleCentral, open_central, open_transport
from protocol.clock import Clock, SystemClock
from protocol.tracing import configure_logging

log = logging.getLogger("edge")


def _version() -> str | None:
    try:
        return metadata.version("denen")
    except metadata.PackageNotFoundError:
        return None


def build_radio(config: SiteConfig) -> BleCentral | None:
    """The gateway's BLE radio when a lock is on BLE; it opens at the first connect."""
    if not config.has_ble_locks:
        return None
    return open_central(
        config.ble.hci,
        state_dir=config.state_dir,
        own_address=config.ble.own_address,
        connect_timeout_s=config.ble.connect_timeout_s,
    )


def build_agent(config: SiteConfig, clock: Clock, ble: BleCentral | None = None) -> Agent:
    """Wire every part of the agent from the config; opens nothing yet."""
    store = Store(config.state_dir / "state.sqlite3")
    outbox = Outbox(config.state_dir / "outbox.sqlite3")
    keys = LockKeyStore(config.state_dir)
    schedule = SyncSchedule(config.sync, clock)
    coordinators = [
        LockCoordinator(
            lock.id,
            site=config.site,
            gateway=config.gateway,
            connect=functools.partial(open_transport, lock.spec, lock_id=lock.id, ble=ble),
            address=lock.spec.address,
            keys=keys,
            store=store,
            outbox=outbox,
            clock=clock,
            sync=config.sync,
            link=config.lock_link,
            next_sync_at=functools.partial(schedule.next_sync_at, lock.id),
        )
        for lock in config.locks
    ]
    desk = None
    if config.clinic is not None:
        desk = ClinicDesk(
            config,
            store=DayStore(config.state_dir / "clinic.sqlite3"),
            outbox=outbox,
            display_store=store,
            clock=clock,
        )
    display_keys = DisplayKeyStore(config.state_dir)
    displays = [
        DisplayCoordinator(
            display.id,
            connect=functools.partial(open_display, display.spec, display_id=display.id),
            address=display.spec.address,
            store=store if desk is None else desk,  # at a clinic the desk picks the source
            clock=clock,
            link=config.display_link,
            keys=display_keys,
        )
        for display in config.displays
    ]
    kiosks: list[KioskReader] = []
    pages = None
    if desk is not None and config.clinic is not None:
        desk.displays = displays
        kiosks = [KioskReader(r, desk=desk, clinic=config.clinic) for r in config.card_readers]
        pages = ClinicPages(desk, config.clinic)
    access = AccessService(store, coordinators)
    display_service = DisplayService(store, displays if desk is None else [desk])
    twin = ConfigTwin(config, store=store, schedule=schedule, locks=coordinators, displays=displays)
    renewal = _renewal(config, clock)
    link = MqttLink(
        config,
        outbox=outbox,
        clock=clock,
        on_snapshot=access.apply,
        on_display_state=display_service.apply if displays or desk else None,
        on_clinic_state=None if desk is None else desk.clinic_state_arrived,
        on_link_change=None if desk is None else desk.link_changed,
        on_config=twin.received,
        on_certificate=None if renewal is None else renewal.take,
        connect_messages=None if renewal is None else renewal.connect_messages,
        agent_version=_version(),
    )
    log_ring = LogRing()
    agent = Agent(
        config,
        store=store,
        outbox=outbox,
        link=link,
        coordinators=coordinators,
        schedule=schedule,
        clock=clock,
        displays=displays,
        desk=desk,
        kiosks=kiosks,
        pages=pages,
        twin=twin,
        log_ring=log_ring,
    )
    # the two parts that call back into the agent: a restart, and metrics read from it
    agent.commands = CommandService(
        config,
        store=store,
        outbox=outbox,
        clock=clock,
        locks=agent.coordinators,
        displays=agent.displays,
        twin=twin,
        logs=log_ring,
        restart=agent.restart,
    )
    link.on_command = agent.commands.received
    agent.renewal = renewal
    if config.metrics.enabled:
        agent.metrics = MetricsServer(config.metrics, render_registry(agent_registry(agent)))
    return agent


def _renewal(config: SiteConfig, clock: Clock) -> CertRenewal | None:
    """Renewal of the enrolled certificate (none before enrollment: no client cert)."""
    tls = config.mqtt.tls
    if tls is None or tls.cert is None or tls.key is None:
        return None
    renewal = CertRenewal(tls, config.site, config.gateway, clock)
    renewal.recover()
    return renewal


async def serve(config: SiteConfig, clock: Clock) -> int:
    """Run the agent until SIGTERM or SIGINT (or a restart command); its exit status."""
    radio = build_radio(config)
    agent = build_agent(config, clock, radio)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.stop)
    try:
        async with agent:
            await agent.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if radio is not None:
            await radio.close()
    return agent.exit_status


def main(argv: list[str] | None = None) -> int:
    """Console entry point ``denen-agent``."""
    parser = argparse.ArgumentParser(
        prog="denen-agent",
        description="Denen site gateway agent",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="run the agent:\n  denen-agent --config /etc/denen/site.toml\n"
        "give a clinic staff member their own PIN for the staff page:\n"
        "  denen-agent clinic set-staff-pin NAME --config /etc/denen/site.toml",
    )
    parser.add_argument("--config", help="path to the site TOML file (required)")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    parser.add_argument(
        "--log-format",
        default="json",
        choices=["json", "text"],
        help="json: one object per line with the trace id (default); text: for a terminal",
    )
    staff_cli.add_commands(parser.add_subparsers(dest="command", metavar="{clinic}"))
    args = parser.parse_args(argv)
    if args.command == "clinic":
        return staff_cli.run(args)
    if args.config is None:
        parser.error("the following arguments are required: --config")
    configure_logging(args.log_level, args.log_format, service="agent")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        log.error("%s", exc)  # noqa: TRY400 - expected failure, no traceback
        return 2
    try:
        return asyncio.run(serve(config, SystemClock()))
    except EdgeError as exc:
        log.error("%s", exc)  # noqa: TRY400 - expected failure, no traceback
        return 1


if __name__ == "__main__":
    sys.exit(main())
