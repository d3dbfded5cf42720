"""The whole Denen stack on one machine, as separate processes: a private Mosquitto, the
cloud, a simulated keypad lock on a pty and the gym's edge agent, and (``clinic=True``) a
clinic: its call-number displays and kiosk card reader on ptys and the clinic's agent.

``make demo`` runs it in the foreground; the end-to-end tests start it in a temp dir and
kill and restart its parts. It installs the site the way the README's technician section
does, through the same command lines, so the demo and the tests run the production
security setup:

1. ``denen provision ca init``: the deployment's CA, the broker's and the cloud's
   certificates;
2. ``denen provision broker-config``: Mosquitto with mutual TLS and the per-gateway ACL;
3. ``denen-cloud seed-demo``: the gym, its room and its lock, registered without keys;
4. ``denen-cloud create-enrollment-token`` + ``denen provision enroll``: the agent gets its
   own certificate, and the cloud adds it to the broker's ACL and reloads the broker;
5. ``denen provision lock pair``: the lock starts unpaired; the stack presses its pairing
   button (the simulator's control API) and pairs it; its PIN key and offline secret go
   straight to the cloud over MQTT as the gateway, sealed to the cloud's pairing key, and
   never touch the disk.

The clinic's agent is enrolled the same way (its own certificate, ``clinic-a/gw-1``), its
displays are paired like the lock (``denen provision display pair``: the stack presses
each display's pairing button; each keeps its key in ``clinic-devices/ID.state.json``,
the agent in its key store), its staff page gets a PIN (``denen-agent clinic
set-staff-pin``; the demo prints it), and ``denen-cloud seed-clinic`` creates its
departments, patients with cards and today's appointments. With ``clinic_devices=False``
the stack does not start the display and reader simulators: the caller hosts them on the
same pty paths and pairs the displays (the bench does, to time the moment a number
reaches each display).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from provisioning.broker import Mosquitto, free_port, wait_for_port

SITE = "gym-a"
GATEWAY = "gw-1"
LOCK_ID = "gym-a-1"
CLINIC_SITE = "clinic-a"
CLINIC_GATEWAY = "gw-1"
KIOSK_ID = "clinic-a-kiosk-1"
CLINIC_STAFF = "reception"  # the demo's one staff member on the clinic agent's staff page


def display_id(n: int) -> str:
    """The id of the clinic's ``n``-th display (from 1)."""
    return f"{CLINIC_SITE}-disp-{n}"


@dataclass
class Service:
    """One child process with its log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - our own console entry points
            self.argv, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(sig)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to tidy up, like a pulled power plug."""
        self.stop(signal.SIGKILL)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class LocalStack:
    """Broker, cloud, one simulated lock and one agent, rooted in ``workdir``.

    The first start seeds the cloud (a gym, its lock, logins with generated passwords,
    remembered in ``workdir/seed.json``, mode 0600), enrolls the agent and pairs the lock
    (the agent's key store gets its link key, the cloud its PIN key and offline secret over
    MQTT, the simulator keeps its keys in ``lock-state.json``).
    """

    workdir: Path
    http_port: int = 8000
    sim_port: int = field(default_factory=free_port)
    broker: Mosquitto | None = None
    services: dict[str, Service] = field(default_factory=dict)
    seed: dict[str, object] = field(default_factory=dict)
    auto_lock_s: int = 5
    clinic: bool = False
    clinic_displays: int = 2
    clinic_devices: bool = True  # False: the caller hosts the displays and the reader
    clinic_port: int = field(default_factory=free_port)  # the clinic agent's pages
    clinic_sim_port: int = field(default_factory=free_port)  # first of the sims' pages
    clinic_seed: dict[str, object] = field(default_factory=dict)
    clinic_staff_pin: str = ""  # the clinic agent's staff page PIN, made up on the first start
    metrics_port: int = field(default_factory=free_port)  # the gym agent's /metrics
    clinic_metrics_port: int = field(default_factory=free_port)

    @property
    def clinic_url(self) -> str:
        """The clinic agent's kiosk and staff pages (on the clinic network in real life),
        https with a certificate from the demo's CA (:attr:`ca_cert` to trust)."""
        return f"https://127.0.0.1:{self.clinic_port}"

    @property
    def ca_cert(self) -> Path:
        """The demo's CA: what the reception's browser trusts for the agent's pages."""
        return self.ca_dir / "ca.crt"

    def clinic_trust(self) -> ssl.SSLContext:
        """A client context trusting the demo's CA, for :attr:`clinic_url`."""
        return ssl.create_default_context(cafile=str(self.ca_cert))

    def display_ids(self) -> list[str]:
        return [display_id(n) for n in range(1, self.clinic_displays + 1)]

    def display_link(self, device: str) -> Path:
        """The pty path of a display or of the kiosk reader."""
        return self.workdir / "clinic-devices" / f"{device}.tty"

    def display_sim_url(self, n: int) -> str:
        """The face of the ``n``-th display (from 1)."""
        return f"http://127.0.0.1:{self.clinic_sim_port + n}"

    @property
    def reader_sim_url(self) -> str:
        return f"http://127.0.0.1:{self.clinic_sim_port}"

    @property
    def clinic_etc(self) -> Path:
        return self.workdir / "etc-clinic"

    @property
    def clinic_state(self) -> Path:
        return self.workdir / "agent-clinic"

    @property
    def cloud_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    @property
    def lock_link(self) -> Path:
        return self.workdir / f"{LOCK_ID}.tty"

    @property
    def agent_state(self) -> Path:
        return self.workdir / "agent"

    def _env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(extra or {})
        return env

    @property
    def ca_dir(self) -> Path:
        return self.workdir / "ca"

    @property
    def broker_conf(self) -> Path:
        """What ``denen provision broker-config`` wrote: config, ACL, CRL, TLS files."""
        return self.workdir / "broker" / "conf"

    @property
    def agent_etc(self) -> Path:
        """The Pi's /etc/denen: certificate, key and site.toml from enrollment."""
        return self.workdir / "etc"

    @property
    def site_config(self) -> Path:
        return self.agent_etc / "site.toml"

    def _cloud_env(self) -> dict[str, str]:
        assert self.broker is not None
        ca = self.ca_dir
        return self._env(
            {
                "DENEN_CLOUD_DATABASE_URL": f"sqlite:///{self.workdir / 'cloud.db'}",
                "DENEN_CLOUD_MQTT_HOST": self.broker.host,
                "DENEN_CLOUD_MQTT_PORT": str(self.broker.port),
                "DENEN_CLOUD_MQTT_TLS_CA": str(ca / "ca.crt"),
                "DENEN_CLOUD_MQTT_TLS_CERT": str(ca / "cloud.crt"),
                "DENEN_CLOUD_MQTT_TLS_KEY": str(ca / "cloud.key"),
                "DENEN_CLOUD_CA_CERT_PATH": str(ca / "ca.crt"),
                "DENEN_CLOUD_CA_KEY_PATH": str(ca / "ca.key"),
                "DENEN_CLOUD_CRL_PATH": str(self.broker_conf / "crl.pem"),
                "DENEN_CLOUD_BROKER_ACL_PATH": str(self.broker_conf / "acl"),
                "DENEN_CLOUD_BROKER_PID_FILE": str(self.workdir / "broker" / "mosquitto.pid"),
                "DENEN_CLOUD_ENROLL_MQTT_HOST": self.broker.host,
                "DENEN_CLOUD_ENROLL_MQTT_PORT": str(self.broker.port),
                "DENEN_CLOUD_SECRET_KEY": self._secret(),
                "DENEN_CLOUD_METRICS_TOKEN": self.metrics_token(),
                "DENEN_CLOUD_PUBLIC_URL": self.cloud_url,
                "DENEN_CLOUD_PAIRING_KEY_PATH": str(self.workdir / "cloud-pairing.key"),
            }
        )

    def cloud_admin(self, *args: str) -> str:
        """Run ``denen-cloud ARGS`` against this stack's cloud (its database and settings),
        as city operations would on the cloud host; its standard output."""
        return self._run(
            f"denen-cloud {args[0]}", self._python("cloud.main", *args), self._cloud_env()
        )

    def _run(self, what: str, argv: list[str], env: dict[str, str], stdin: str = "") -> str:
        """Run one installation step; raise with its own error message when it fails."""
        done = subprocess.run(  # noqa: S603 - our own console entry points
            argv, env=env, input=stdin, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{what} failed: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def _denen(self, *args: str) -> list[str]:
        return self._python("provisioning.cli", *args)

    def _make_ca(self) -> None:
        if (self.ca_dir / "ca.crt").exists():
            return
        self._run(
            "denen provision ca init",
            self._denen("provision", "ca", "init", "--out", str(self.ca_dir)),
            self._env(),
        )

    def _start_broker(self) -> None:
        port = self._broker_port()
        if not (self.broker_conf / "mosquitto.conf").exists():
            self._run(
                "denen provision broker-config",
                self._denen(
                    "provision",
                    "broker-config",
                    "--out",
                    str(self.broker_conf),
                    "--ca-dir",
                    str(self.ca_dir),
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--max-queued",
                    "100000",
                ),
                self._env(),
            )
        self.broker = Mosquitto(
            self.workdir / "broker",
            port=port,
            config=(self.broker_conf / "mosquitto.conf").read_text(),
            pid_file=self.workdir / "broker" / "mosquitto.pid",
        )
        self.broker.start()

    def _enroll_agent(self) -> None:
        """What city ops and the technician do for a new Pi: a one-time token, then
        ``denen provision enroll`` on the Pi, then the paired lock goes into site.toml."""
        if self.site_config.exists():
            return
        self._enroll(SITE, GATEWAY, self.agent_etc, self.agent_state)
        with self.site_config.open("a") as toml:
            toml.write(
                f'\n[[locks]]\nid = "{LOCK_ID}"\ntransport = "serial:{self.lock_link}"\n'
                "\n[sync]\nevent_poll_s = 5\n"
                f'\n[metrics]\nhost = "127.0.0.1"\nport = {self.metrics_port}\n'
            )

    def _enroll_clinic_agent(self) -> None:
        """The clinic's Pi: enrolled like the gym's, then its displays, kiosk reader and
        the pages it serves go into its site.toml."""
        config = self.clinic_etc / "site.toml"
        if config.exists():
            return
        self._enroll(CLINIC_SITE, CLINIC_GATEWAY, self.clinic_etc, self.clinic_state)
        parts = [
            f'\n[[displays]]\nid = "{d}"\ntransport = "serial:{self.display_link(d)}"\n'
            for d in self.display_ids()
        ]
        parts.append(
            f'\n[[card_readers]]\nid = "{KIOSK_ID}"\n'
            f'transport = "serial:{self.display_link(KIOSK_ID)}"\n'
            'walk_in_department = "internal"\n'
        )
        cert, key = self._issue_clinic_pages_cert()
        parts.append(
            f'\n[clinic]\nhost = "127.0.0.1"\nport = {self.clinic_port}\n'
            f'tls_cert = "{cert}"\ntls_key = "{key}"\n'
        )
        parts.append(f'\n[metrics]\nhost = "127.0.0.1"\nport = {self.clinic_metrics_port}\n')
        with config.open("a") as toml:
            toml.write("".join(parts))

    def _issue_clinic_pages_cert(self) -> tuple[Path, Path]:
        """What the city's CA does for a clinic's Pi: a server certificate for the address
        the reception browses to (here 127.0.0.1 and localhost), for its pages' https."""
        self._run(
            "denen provision ca pages-cert",
            self._denen(
                "provision",
                "ca",
                "pages-cert",
                "--ca-dir",
                str(self.ca_dir),
                "--host",
                "localhost",
                "--ip",
                "127.0.0.1",
                "--out",
                str(self.clinic_etc),
            ),
            self._env(),
        )
        return self.clinic_etc / "pages.crt", self.clinic_etc / "pages.key"

    def _set_clinic_staff_pin(self) -> None:
        """What the technician does on the clinic's Pi: ``denen-agent clinic set-staff-pin
        reception``. The demo makes a PIN up and keeps it in ``workdir/clinic-staff-pin`` (0600)."""
        path = self.workdir / "clinic-staff-pin"
        if not path.exists():
            path.touch(0o600)
            path.write_text(f"{secrets.randbelow(10**6):06d}")
        self.clinic_staff_pin = path.read_text().strip()
        config = self.clinic_etc / "site.toml"
        if "[clinic.staff]" not in config.read_text():
            self._run(
                "denen-agent clinic set-staff-pin",
                self._python(
                    "edge.main",
                    "clinic",
                    "set-staff-pin",
                    CLINIC_STAFF,
                    "--config",
                    str(config),
                    "--pin-stdin",
                ),
                self._env(),
                stdin=self.clinic_staff_pin + "\n",
            )

    def _enroll(self, site: str, gateway: str, etc: Path, state: Path) -> None:
        issued = json.loads(
            self._run(
                "denen-cloud create-enrollment-token",
                self._python(
                    "cloud.main",
                    "create-enrollment-token",
                    "--site",
                    site,
                    "--gateway",
                    gateway,
                    "--by",
                    "demo",
                ),
                self._cloud_env(),
            )
        )
        self._run(
            "denen provision enroll",
            self._denen(
                "provision",
                "enroll",
                "--token-file",
                "-",
                "--cloud",
                self.cloud_url,
                "--out",
                str(etc),
                "--state-dir",
                str(state),
            ),
            self._env(),
            stdin=str(issued["token"]),
        )

    def _secret(self, name: str = "cloud-secret") -> str:
        path = self.workdir / name
        if not path.exists():
            path.write_text(secrets.token_urlsafe(32))
            path.chmod(0o600)
        return path.read_text().strip()

    def metrics_token(self) -> str:
        """The bearer token the cloud's ``/metrics`` asks for (made on the first start)."""
        return self._secret("cloud-metrics-token")

    def _python(self, module: str, *args: str) -> list[str]:
        return [sys.executable, "-m", module, *args]

    @property
    def lock_state(self) -> Path:
        return self.workdir / "lock-state.json"

    def _pair_lock(self) -> None:
        """Press the simulated lock's pairing button and pair it, as a technician would,
        with the enrolled agent's site config: the keys go to the cloud, which confirms."""
        key_file = self.agent_state / "locks" / f"{LOCK_ID}.key.json"
        if key_file.exists() and self.lock_state.exists():
            return  # paired on an earlier start; both sides kept their keys
        button = f"{self.sim_url}/api/locks/{LOCK_ID}/pair-button"
        request = urllib.request.Request(button, method="POST")  # noqa: S310 - our own http URL
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            answer.read()
        paired = subprocess.run(  # noqa: S603 - our own console entry point
            self._python(
                "provisioning.cli",
                "provision",
                "lock",
                "pair",
                "--serial",
                str(self.lock_link),
                "--id",
                LOCK_ID,
                "--config",
                str(self.site_config),
                "--skip-keypad-test",
                "--wait",
                "20",
            ),
            env=self._env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if paired.returncode != 0:
            said = paired.stderr.strip() or paired.stdout.strip()
            raise RuntimeError(f"pairing the simulated lock failed: {said}")

    def display_state(self, device: str) -> Path:
        """The simulated display's flash: its link key and counters."""
        return self.workdir / "clinic-devices" / f"{device}.state.json"

    def _pair_display(self, device: str, sim_url: str) -> None:
        """Press the simulated display's pairing button and pair it with the clinic's agent
        (``denen provision display pair``), as a technician would."""
        key_file = self.clinic_state / "displays" / f"{device}.key.json"
        if key_file.exists() and self.display_state(device).exists():
            return  # paired on an earlier start; both sides kept their keys
        button = f"{sim_url}/api/displays/{device}/pair-button"
        request = urllib.request.Request(button, method="POST")  # noqa: S310 - our own http URL
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            answer.read()
        paired = subprocess.run(  # noqa: S603 - our own console entry point
            self._python(
                "provisioning.cli",
                "provision",
                "display",
                "pair",
                "--serial",
                str(self.display_link(device)),
                "--id",
                device,
                "--state-dir",
                str(self.clinic_state),
                "--wait",
                "20",
            ),
            env=self._env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if paired.returncode != 0:
            raise RuntimeError(f"pairing the simulated {device} failed: {paired.stderr.strip()}")

    def _seed(self) -> None:
        path = self.workdir / "seed.json"
        if not path.exists():
            out = self._run(
                "denen-cloud seed-demo",
                self._python("cloud.main", "seed-demo", *self._seed_args()),
                self._cloud_env(),
            )
            path.touch(0o600)
            path.write_text(out)
        self.seed = json.loads(path.read_text())
        if self.clinic:
            self._seed_clinic()

    @staticmethod
    def _seed_args() -> list[str]:
        return ["--site", SITE, "--gateway", GATEWAY, "--lock", LOCK_ID]

    def _seed_clinic(self) -> None:
        path = self.workdir / "clinic-seed.json"
        if not path.exists():
            displays = [arg for d in self.display_ids() for arg in ("--display", d)]
            out = self._run(
                "denen-cloud seed-clinic",
                self._python(
                    "cloud.main",
                    "seed-clinic",
                    "--site",
                    CLINIC_SITE,
                    "--gateway",
                    CLINIC_GATEWAY,
                    *displays,
                ),
                self._cloud_env(),
            )
            path.touch(0o600)
            path.write_text(out)
        self.clinic_seed = json.loads(path.read_text())

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.agent_state.mkdir(exist_ok=True)
        self._make_ca()
        self._start_broker()
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        self.services["cloud"] = Service(
            "cloud",
            self._python(
                "cloud.main", "serve", "--host", "127.0.0.1", "--port", str(self.http_port)
            ),
            self._cloud_env(),
            logs / "cloud.log",
        )
        self.services["lock"] = Service(
            "lock",
            self._python(
                "firmware_sim.main",
                "lock",
                "--id",
                LOCK_ID,
                "--state-file",
                str(self.lock_state),
                "--link",
                str(self.lock_link),
                "--control-port",
                str(self.sim_port),
                "--auto-lock",
                str(self.auto_lock_s),
            ),
            self._env(),
            logs / "lock.log",
        )
        self.services["agent"] = Service(
            "agent",
            self._python("edge.main", "--config", str(self.site_config)),
            self._env(),
            logs / "agent.log",
        )
        self.services["lock"].start()
        self.services["cloud"].start()
        wait_for_port(self.sim_port, timeout=30)
        self._wait_for_path(self.lock_link, 30)
        wait_for_port(self.http_port, timeout=60)
        self._seed()
        self._enroll_agent()
        self._pair_lock()
        self.services["agent"].start()
        if self.clinic:
            self._start_clinic(logs)

    def _start_clinic(self, logs: Path) -> None:
        (self.workdir / "clinic-devices").mkdir(exist_ok=True)
        self.clinic_state.mkdir(exist_ok=True)
        sims: list[tuple[str, list[str], int]] = []
        if self.clinic_devices:
            for n, d in enumerate(self.display_ids(), start=1):
                sims.append((d, ["display"], self.clinic_sim_port + n))
            sims.append((KIOSK_ID, ["card-reader"], self.clinic_sim_port))
        for device, kind, port in sims:
            flash = ["--state-file", str(self.display_state(device))] if kind == ["display"] else []
            self.services[device] = Service(
                device,
                self._python(
                    "firmware_sim.main",
                    *kind,
                    "--id",
                    device,
                    "--link",
                    str(self.display_link(device)),
                    "--control-port",
                    str(port),
                    *flash,
                ),
                self._env(),
                logs / f"{device}.log",
            )
            self.services[device].start()
        for _device, _kind, port in sims:
            wait_for_port(port, timeout=30)
        if self.clinic_devices:
            for n, d in enumerate(self.display_ids(), start=1):
                self._pair_display(d, self.display_sim_url(n))
        self._enroll_clinic_agent()
        self._set_clinic_staff_pin()
        self.services["clinic-agent"] = Service(
            "clinic-agent",
            self._python("edge.main", "--config", str(self.clinic_etc / "site.toml")),
            self._env(),
            logs / "clinic-agent.log",
        )
        self.services["clinic-agent"].start()
        wait_for_port(self.clinic_port, timeout=30)

    def _broker_port(self) -> int:
        # keep the broker's port across restarts of the stack: the agent config names it
        path = self.workdir / "broker-port"
        if not path.exists():
            path.write_text(str(free_port()))
        return int(path.read_text())

    @staticmethod
    def _wait_for_path(path: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} did not appear within {timeout}s")
            time.sleep(0.05)

    def stop(self) -> None:
        clinic = [n for n in self.services if n not in ("clinic-agent", "agent", "lock", "cloud")]
        for name in ("clinic-agent", *clinic, "agent", "lock", "cloud"):
            if name in self.services:
                self.services[name].stop()
        if self.broker is not None:
            self.broker.stop()

    def __enter__(self) -> LocalStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_demo(workdir: Path, port: int = 8000) -> int:
    """``make demo``: start everything, print where to go, run until Ctrl-C."""
    stack = LocalStack(
        workdir.resolve(),
        http_port=port,
        sim_port=8100,
        clinic=True,
        clinic_port=8080,
        clinic_sim_port=8110,
        metrics_port=9108,
        clinic_metrics_port=9109,
    )
    with stack:
        users = stack.seed.get("users", {})
        print(f"\nDenen demo is running (state in {stack.workdir})\n")
        print(f"  dashboard     {stack.cloud_url}/")
        print(f"  book a slot   {stack.cloud_url}/book")
        print(f"  approve       {stack.cloud_url}/manage")
        print(f"  mail outbox   {stack.cloud_url}/mail")
        print(f"  lock keypad   {stack.sim_url}/locks/{LOCK_ID}")
        print(f"  metrics       {stack.cloud_url}/metrics, agents :9108/metrics :9109/metrics")
        print(f"                (cloud: Authorization: Bearer {stack.metrics_token()})")
        print("\n  clinic (Yonago Clinic A):")
        print(f"  tap a card    {stack.reader_sim_url}/readers/{KIOSK_ID}")
        print(f"  kiosk screen  {stack.clinic_url}/kiosk/{KIOSK_ID}")
        print(f"  staff page    {stack.clinic_url}/staff   (the agent's, works offline, PIN below)")
        for n, d in enumerate(stack.display_ids(), start=1):
            print(f"  display {n}     {stack.display_sim_url(n)}/displays/{d}")
        patients = stack.clinic_seed.get("patients", [])
        if isinstance(patients, list) and patients:
            print("  patient cards " + ", ".join(str(p.get("card")) for p in patients[:3]))
        clinic_users = stack.clinic_seed.get("users", {})
        print("\n  logins (generated for this install):")
        for group in (users, clinic_users):
            if isinstance(group, dict):
                for name, info in group.items():
                    if isinstance(info, dict):
                        role, password = info.get("role", "?"), info.get("password", "?")
                        token = info.get("api_token", "?")
                        print(f"    {role:8} {name} / {password}   (API token {token})")
        print("    ops and clinic enrol an authenticator app at their first login (/account)")
        print(
            f"    staff {CLINIC_STAFF} / PIN {stack.clinic_staff_pin} (the clinic agent's "
            "staff page)"
        )
        print(f"\n  logs in {stack.workdir / 'logs'}; Ctrl-C stops everything.\n", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while all(s.running() for s in stack.services.values()):
                time.sleep(0.5)
            for s in stack.services.values():
                if not s.running():
                    print(f"{s.name} stopped; its log ends:\n{s.log_text()[-2000:]}")
                    return 1
    return 0
