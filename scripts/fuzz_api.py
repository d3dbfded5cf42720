"""Fuzz the cloud's HTTP API from its own OpenAPI schema with schemathesis, all checks.

Starts the real ``denen-cloud serve`` (SQLite in a temporary directory, MQTT off) seeded as
the demo is (a gym with a manager and ops, a clinic with its staff), then runs
``schemathesis run --checks all`` once per signed-in role and once anonymously. Prints the
number of test cases and the failures by check; exits non-zero when any run fails.

    .venv/bin/python scripts/fuzz_api.py                    # the long run: ~10,000+ cases
    .venv/bin/python scripts/fuzz_api.py --max-examples 3   # what `make test` runs

A failure prints schemathesis's own report (each with a curl line that reproduces it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent
SUMMARY = re.compile(r"(\d+) generated")
FAILED_CHECK = re.compile(r"❌ (ST\d+ [^:]+): (\d+)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _environment(directory: Path) -> dict[str, str]:
    """Production-like settings with enrollment configured (a CA and its CRL)."""
    ca = directory / "ca"
    subprocess.run(
        [str(BIN / "denen"), "provision", "ca", "init", "--out", str(ca)],
        check=True,
        capture_output=True,
    )
    return dict(
        os.environ,
        DENEN_CLOUD_DATABASE_URL=f"sqlite:///{directory}/cloud.db",
        DENEN_CLOUD_CA_CERT_PATH=str(ca / "ca.crt"),
        DENEN_CLOUD_CA_KEY_PATH=str(ca / "ca.key"),
        DENEN_CLOUD_CRL_PATH=str(ca / "crl.pem"),
        DENEN_CLOUD_SECRET_KEY="f" * 40,
        DENEN_CLOUD_METRICS_TOKEN="m" * 32,
        DENEN_CLOUD_MQTT_ENABLED="0",
    )


def _seed(env: dict[str, str]) -> dict[str, str]:
    """User name -> API token for the demo's gym and clinic staff (what scripts use:
    ops, technicians and clinic staff cannot use their password without a second factor)."""
    users: dict[str, str] = {}
    for command in ("seed-demo", "seed-clinic"):
        out = subprocess.run(
            [str(BIN / "denen-cloud"), command], env=env, check=True, capture_output=True
        )
        for name, user in json.loads(out.stdout)["users"].items():
            users[name] = user["api_token"]
    return users


def _wait_until_serving(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the cloud exited with {server.returncode} before serving")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the cloud did not answer /healthz within 60 s")


def _run(url: str, who: str, password: str | None, args: argparse.Namespace) -> tuple[int, str]:
    command = [
        str(BIN / "schemathesis"),
        "--config-file",
        str(Path(__file__).with_name("schemathesis.toml")),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        # the login throttle's 429 after repeated wrong passwords is by design; this check
        # accepts only 401/403 (scripts/schemathesis.toml says more)
        "--exclude-checks",
        "ignored_auth",
        "--max-examples",
        str(args.max_examples),
        "--seed",
        str(args.seed),
        "--workers",
        "1",
        "--no-color",
    ]
    if password is not None:
        command += ["--auth", f"{who}:{password}"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    return done.returncode, done.stdout + done.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=40, help="per operation and phase")
    parser.add_argument("--seed", type=int, default=20261208)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="denen-fuzz-api-") as tmp:
        directory = Path(tmp)
        env = _environment(directory)
        users = _seed(env)
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        log = (directory / "cloud.log").open("wb")
        server = subprocess.Popen(
            [str(BIN / "denen-cloud"), "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_until_serving(url, server)
            runs: list[tuple[str, str | None]] = [*users.items(), ("anonymous", None)]
            failed = 0
            for who, password in runs:
                code, report = _run(url, who, password, args)
                cases = sum(int(n) for n in SUMMARY.findall(report))
                checks = ", ".join(f"{name} x{n}" for name, n in FAILED_CHECK.findall(report))
                print(f"{who:10s} {cases:6d} cases  {'FAILED: ' + checks if code else 'ok'}")
                if code:
                    failed += 1
                    print(report)
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
        if failed:
            sys.stdout.write((directory / "cloud.log").read_text(errors="replace")[-20_000:])
        return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
