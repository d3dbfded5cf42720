"""Attack: guess a manager's password from one machine, each try with a different forged
``X-Forwarded-For``, against the real ``denen-cloud serve``. uvicorn by default believes
that header from 127.0.0.1 and rewrites the client's address, so each guess would count
for a made-up address and the login throttle would never slow the guesser. Which proxies
are believed is the deployment's one setting (``DENEN_CLOUD_TRUSTED_PROXIES``,
``cloud/core/addresses.py``): with none named, the TCP peer is the client."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.smtp import free_port

BIN = Path(sys.executable).parent


def _env(tmp_path: Path) -> dict[str, str]:
    return dict(
        os.environ,
        DENEN_CLOUD_DATABASE_URL=f"sqlite:///{tmp_path}/cloud.db",
        DENEN_CLOUD_SECRET_KEY="s" * 40,
        DENEN_CLOUD_METRICS_TOKEN="m" * 32,
        DENEN_CLOUD_MQTT_ENABLED="0",
    )


def test_forged_forwarded_for_does_not_spread_guesses_over_made_up_addresses(
    tmp_path: Path,
) -> None:
    env = _env(tmp_path)
    seeded = subprocess.run(
        [str(BIN / "denen-cloud"), "seed-demo"], env=env, check=True, capture_output=True
    )
    manager = json.loads(seeded.stdout)["users"]["manager"]["password"]
    port = free_port()
    cmd = [str(BIN / "denen-cloud"), "serve", "--port", str(port)]
    with subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as proc:
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, "the cloud exited"
                assert time.monotonic() < deadline, "the cloud did not start"
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", port), 0.2),
                ):
                    break
                time.sleep(0.1)  # polling a port that has no event to await
            wrong = base64.b64encode(b"manager:not-the-password").decode()
            answers = []
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                for i in range(8):
                    headers = {
                        "Authorization": f"Basic {wrong}",
                        "X-Forwarded-For": f"198.51.100.{i}",
                    }
                    answers.append(http.get("/api/reservations", headers=headers).status_code)
                right = base64.b64encode(f"manager:{manager}".encode()).decode()
                after = http.get("/api/reservations", headers={"Authorization": f"Basic {right}"})
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    # five free wrong passwords from this machine, then it waits, whatever the header says
    assert answers[:5] == [401] * 5
    assert set(answers[5:]) == {429}
    assert after.status_code == 429  # the guessing machine waits, even with the password
