"""A private Mosquitto broker for the demo and the tests.

Started in the foreground on a free loopback port with the config under test, stopped
with SIGTERM so that its persistence survives restarts.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


@dataclass
class Mosquitto:
    """One broker process. ``extra_config`` is appended to a plain anonymous listener
    unless ``config`` replaces the whole file (e.g. the TLS config rendered by
    :func:`provisioning.broker_config.render_config` for ``port``)."""

    directory: Path
    port: int = field(default_factory=free_port)
    config: str | None = None
    extra_config: str = ""
    # where to write the broker's pid, for whoever sends it SIGHUP after an ACL or CRL
    # change (the cloud's ``broker_pid_file``); rewritten at every start
    pid_file: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def log_path(self) -> Path:
        return self.directory / "mosquitto.log"

    def write_config(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        body = self.config or (
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.directory}/\n"
            "max_queued_messages 100000\n"
        )
        text = (
            "user root\n"
            f"log_dest file {self.log_path}\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            f"{body}\n{self.extra_config}\n"
        )
        path = self.directory / "mosquitto.conf"
        path.write_text(text)
        return path

    def start(self) -> None:
        conf = self.write_config()
        self.process = subprocess.Popen(  # noqa: S603 - our binary, our config file
            [MOSQUITTO, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if self.pid_file is not None:
            self.pid_file.write_text(f"{self.process.pid}\n")
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            log = self.log_path.read_text() if self.log_path.exists() else ""
            raise RuntimeError(f"mosquitto did not start:\n{log}") from None

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def reload(self) -> None:
        """SIGHUP: re-read the ACL and the CRL (new TLS handshakes) without dropping anyone."""
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError("mosquitto is not running; start() it first")
        mark = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the reload is done once it says so
            with contextlib.suppress(OSError), self.log_path.open("rb") as fh:
                fh.seek(mark)
                if b"Reloading config" in fh.read():
                    # logged when the reload starts; a SIGHUP that arrives before it ends
                    # is lost (2.0.11 clears its flag afterwards), so give it time to end
                    time.sleep(0.2)
                    return
            time.sleep(0.02)
        raise TimeoutError(f"mosquitto did not log a reload; see {self.log_path}")

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def running_mosquitto(directory: Path, **kwargs: object) -> Iterator[Mosquitto]:
    broker = Mosquitto(directory, **kwargs)  # type: ignore[arg-type]
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
