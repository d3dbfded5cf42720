"""``denen release keygen`` and ``sign`` as a release manager runs them, and the image they
make installed by a simulated lock given the public key the way ``denen-sim`` takes it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from firmware_sim.clinic_cli import read_release_keys
from firmware_sim.errors import SimulatorError
from firmware_sim.main import build_parser
from protocol import firmware_image as fi
from protocol.firmware_updater import lock_updater
from provisioning.cli import main
from tests.unit.test_lock_firmware_support import ready_lock, request


def keygen(tmp_path: Path) -> Path:
    keys = tmp_path / "release"
    assert main(["release", "keygen", "--out", str(keys)]) == 0
    return keys


def sign(keys: Path, out: Path, *, version: str = "1.4.2", model: str = "RL-2000") -> int:
    payload = out.with_suffix(".bin")
    payload.write_bytes(b"\x7fELF firmware" * 100)
    argv = ["release", "sign", "--key", str(keys / "release.key"), "--kind", "lock"]
    argv += ["--model", model, "--version", version, "--payload", str(payload), "--out", str(out)]
    return main(argv)


def test_keygen_writes_a_private_key_only_its_owner_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = keygen(tmp_path)
    assert stat.S_IMODE((keys / "release.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    public = fi.load_public_key((keys / "release.pub").read_bytes())
    assert f"key id {fi.key_id(public).hex()}" in capsys.readouterr().out


def test_keygen_does_not_replace_a_key_devices_already_trust(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = keygen(tmp_path)
    before = (keys / "release.key").read_bytes()
    assert main(["release", "keygen", "--out", str(keys)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert (keys / "release.key").read_bytes() == before


def test_a_signed_image_is_installed_by_a_lock_that_trusts_the_public_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = keygen(tmp_path)
    image_path = tmp_path / "rl2000-1.4.2.dnfw"
    assert sign(keys, image_path) == 0
    assert "signed lock 'RL-2000' 1.4.2: 1300 payload bytes" in capsys.readouterr().out

    args = build_parser().parse_args(
        ["lock", "--id", "gym-a-1", "--release-key", str(keys / "release.pub")]
    )
    release_keys = read_release_keys(args.release_keys)
    fw, _ = ready_lock(model="RL-2000", firmware="1.4.1", release_keys=release_keys)

    updater = lock_updater(fi.FirmwareImage.from_bytes(image_path.read_bytes()))
    while (step := updater.next_request()) is not None:
        updater.receive(request(fw, step.type, step.payload))

    assert fw.info().firmware == "1.4.2"


def test_sign_refuses_a_key_others_can_read_and_a_version_that_is_not_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = keygen(tmp_path)
    capsys.readouterr()
    assert sign(keys, tmp_path / "a.dnfw", version="1.4") == 1
    assert "is not MAJOR.MINOR.PATCH" in capsys.readouterr().err
    (keys / "release.key").chmod(0o644)
    assert sign(keys, tmp_path / "b.dnfw") == 1
    assert "chmod 600" in capsys.readouterr().err
    assert not (tmp_path / "a.dnfw").exists()
    assert not (tmp_path / "b.dnfw").exists()


def test_the_simulator_names_a_release_key_file_it_cannot_use(tmp_path: Path) -> None:
    bad = tmp_path / "release.pub"
    bad.write_text("not a key")
    with pytest.raises(SimulatorError, match=r"release\.pub"):
        read_release_keys([bad])
