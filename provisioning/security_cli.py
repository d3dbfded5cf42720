"""The identity steps of ``denen provision``: ``ca init``, ``broker-config``, ``enroll``."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from protocol.errors import DenenError
from protocol.secret_args import add_secret_file, read_secret
from provisioning import broker_config, enroll, pki

STEPS = ("ca", "broker-config", "enroll")
RAW = argparse.RawDescriptionHelpFormatter

CA_EPILOG = """\
example:
  denen provision ca init --out /etc/denen/ca --broker-host mqtt.example.city \\
      --broker-ip 203.0.113.10

writes ca.crt/ca.key, server.crt/server.key (the broker), cloud.crt/cloud.key (the
cloud's MQTT identity, CN "cloud") and an empty crl.pem; keys are 0600, the dir 0700.
localhost and 127.0.0.1 are always in the broker certificate unless --no-loopback.

  denen provision ca pages-cert --ca-dir /etc/denen/ca --ip 192.168.10.5 \
      --host clinic-a-gw-1.local --out ./clinic-a-gw-1

writes pages.crt/pages.key: the https certificate of a clinic agent's kiosk and staff
pages, for the addresses the reception browses to. Copy both to the Pi's /etc/denen
(the key 0600) and set [clinic] tls_cert and tls_key in its site.toml.
"""

BROKER_EPILOG = """\
example:
  denen provision broker-config --out deploy/mosquitto-prod --ca-dir /etc/denen/ca \\
      --paths-as /mosquitto/config

writes mosquitto.conf (TLS 8883, client certificates required, CN = username, CRL,
no anonymous access, persistence, a 12-hour backlog), acl, and copies of ca.crt,
server.crt, server.key and crl.pem. The cloud keeps acl and crl.pem up to date as
gateways are enrolled, renewed and revoked; the broker reads them again on SIGHUP.
"""

ENROLL_EPILOG = """\
example:
  denen provision enroll --token-file - --cloud https://denen.example.city \\
      --out /etc/denen --state-dir /var/lib/denen-agent

city operations make the token (dashboard, POST /api/enrollment-tokens or
`denen-cloud create-enrollment-token --site gym-a --gateway gw-1`); it works once,
within 24 hours. Paste it on standard input (--token-file -, or the old --token -) or
give a file holding it (--token-file PATH); a token typed as an argument is refused, as
every user of the Pi could read it (ps) and it stays in the shell history.
The token carries the fingerprint of the cloud's CA: enroll checks the cloud against it
before sending anything. --cloud must be https (plain http only to 127.0.0.1 or ::1).
"""


def add_steps(steps: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``ca``, ``broker-config`` and ``enroll`` steps to ``denen provision``."""
    ca = steps.add_parser(
        "ca",
        help="create the deployment's certificate authority and the broker's certificate",
        description="The deployment's certificate authority.",
        epilog=CA_EPILOG,
        formatter_class=RAW,
    )
    ca_cmds = ca.add_subparsers(dest="ca_command", metavar="COMMAND")
    init = ca_cmds.add_parser(
        "init",
        help="create the CA, the broker certificate and the cloud's client certificate",
        description="Create the CA, the broker certificate and the cloud's client certificate.",
        epilog=CA_EPILOG,
        formatter_class=RAW,
    )
    init.add_argument("--out", type=Path, required=True, help="CA directory (made 0700)")
    init.add_argument("--broker-host", action="append", default=[], help="DNS name; repeatable")
    init.add_argument("--broker-ip", action="append", default=[], help="IP address; repeatable")
    init.add_argument("--no-loopback", action="store_true", help="leave out localhost/127.0.0.1")
    init.add_argument("--days", type=int, default=pki.DEFAULT_CA_DAYS, help="CA validity")
    init.add_argument("--force", action="store_true", help="replace an existing CA")
    pages = ca_cmds.add_parser(
        "pages-cert",
        help="issue the https certificate of a clinic agent's pages",
        description="Issue a server certificate for a clinic agent's kiosk and staff pages.",
        epilog=CA_EPILOG,
        formatter_class=RAW,
    )
    pages.add_argument("--ca-dir", type=Path, required=True, help="from `ca init`")
    pages.add_argument("--host", action="append", default=[], help="DNS name; repeatable")
    pages.add_argument("--ip", action="append", default=[], help="IP address; repeatable")
    pages.add_argument("--out", type=Path, required=True, help="writes pages.crt, pages.key")
    ca.set_defaults(print_step_help=ca.print_help)

    bc = steps.add_parser(
        "broker-config",
        help="write the production Mosquitto config, ACL and TLS files",
        description="Write the production Mosquitto config, ACL and TLS files.",
        epilog=BROKER_EPILOG,
        formatter_class=RAW,
    )
    bc.add_argument("--out", type=Path, required=True, help="directory the broker reads")
    bc.add_argument("--ca-dir", type=Path, required=True, help="from `denen provision ca init`")
    bc.add_argument("--port", type=int, default=broker_config.TLS_PORT)
    bc.add_argument("--bind", default="0.0.0.0", help="listen address")  # noqa: S104
    bc.add_argument("--paths-as", type=Path, help="where the broker sees --out (container)")
    bc.add_argument("--data-dir", type=Path, help="persistence directory as the broker sees it")
    bc.add_argument(
        "--gateway",
        action="append",
        default=[],
        help="SITE/GW whose certificate predates per-certificate names (CN SITE.GW)",
    )
    bc.add_argument("--max-queued", type=int, help="max_queued_messages (default: 12 h)")

    en = steps.add_parser(
        "enroll",
        help="enroll this Pi with a one-time token from city operations",
        description="Enroll this Pi: make its key, get its certificate, write site.toml.",
        epilog=ENROLL_EPILOG,
        formatter_class=RAW,
    )
    add_secret_file(
        en,
        "--token",
        what="enrollment token",
        help="the one-time token",
        required=True,
        dash_means_stdin=True,
    )
    en.add_argument("--cloud", required=True, help="the cloud's URL, e.g. https://denen.city")
    en.add_argument("--out", type=Path, default=Path("/etc/denen"), help="config directory")
    en.add_argument("--state-dir", type=Path, default=enroll.DEFAULT_STATE_DIR)
    en.add_argument("--force", action="store_true", help="enroll again over an old identity")


def _progress(message: str) -> None:
    print(message, flush=True)


def _gateways(values: list[str]) -> list[tuple[str, str]]:
    out = []
    for value in values:
        site, sep, gateway = value.partition("/")
        if not sep:
            raise pki.PkiError(f"--gateway {value!r}: write it as SITE/GW, e.g. gym-a/gw-1")
        out.append((site, gateway))
    return out


def _pages_cert(args: argparse.Namespace) -> int:
    if not args.host and not args.ip:
        raise pki.PkiError(
            "the pages certificate needs the address the reception browses to: "
            "pass --ip (the Pi's LAN address) and/or --host"
        )
    cert, key = args.out / "pages.crt", args.out / "pages.key"
    pki.issue_server_files(
        pki.load_ca(pki.CaFiles(args.ca_dir)),
        cert,
        key,
        hosts=args.host,
        ips=pki.parse_ips(args.ip),
        now=dt.datetime.now(dt.UTC),
    )
    _progress(
        f"wrote {cert} and {key} (0600). Copy both to the Pi's /etc/denen, set [clinic] "
        "tls_cert and tls_key in its site.toml and restart the agent."
    )
    return 0


def run(args: argparse.Namespace) -> int:
    """Run one of :data:`STEPS`; errors are one line on stderr and exit status 1."""
    try:
        return _run(args)
    except (DenenError, OSError) as exc:
        print(f"denen provision {args.step}: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.step == "ca":
        if args.ca_command is None:
            args.print_step_help()
            return 0
        if args.ca_command == "pages-cert":
            return _pages_cert(args)
        files = pki.init_ca(
            args.out,
            broker_hosts=args.broker_host,
            broker_ips=args.broker_ip,
            include_loopback=not args.no_loopback,
            days=args.days,
            force=args.force,
            progress=_progress,
        )
        _progress(
            f"done. Give the cloud {files.ca_cert} and {files.ca_key} "
            "(DENEN_CLOUD_CA_CERT_PATH / _KEY_PATH) and its MQTT identity "
            f"{files.cloud_cert}, {files.cloud_key}; next: `denen provision broker-config`."
        )
        return 0
    if args.step == "broker-config":
        written = broker_config.write_broker_dir(
            args.out,
            pki.CaFiles(args.ca_dir),
            gateways=_gateways(args.gateway),
            port=args.port,
            bind_address=args.bind,
            paths_as=args.paths_as,
            data_dir=args.data_dir,
            max_queued_messages=args.max_queued,
        )
        _progress(f"wrote {written.config}, {written.acl} and the broker's TLS files")
        return 0
    token = read_secret(args.token_file, "enrollment token")
    done = enroll.enroll(
        token, args.cloud, args.out, state_dir=args.state_dir, force=args.force, progress=_progress
    )
    _progress(
        f"enrolled as {done.site}/{done.gateway} (broker {done.mqtt_host}:{done.mqtt_port}); "
        f"config in {done.site_toml}. Next: `denen provision lock pair`."
    )
    return 0
