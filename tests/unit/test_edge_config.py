"""Site config: a good file loads; a bad one says which field and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.clinic.staff_access import PinHash
from edge.config import SITE_TOML_EXAMPLE, load_config
from edge.errors import ConfigError
from edge.transports import TransportKind

MINIMAL = """
site = "gym-a"
gateway = "gw-1"
state_dir = "/tmp/denen"
[mqtt]
host = "127.0.0.1"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path


def test_the_documented_example_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, SITE_TOML_EXAMPLE))
    assert config.client_id == "gym-a-gw-1"
    assert config.locks[0].spec.kind is TransportKind.SERIAL
    assert config.locks[0].spec.address == "/dev/ttyUSB0"
    assert config.mqtt.tls is not None
    assert config.sync.full_sync_interval_s == 43200


def test_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.mqtt.port == 1883
    assert config.mqtt.session_expiry_s == 7 * 24 * 3600
    assert config.locks == []
    assert config.sync.event_poll_s == 30


def test_pty_is_driven_like_serial(tmp_path: Path) -> None:
    text = MINIMAL + '[[locks]]\nid = "l1"\ntransport = "pty:/dev/pts/3"\n'
    assert load_config(write(tmp_path, text)).locks[0].spec.kind is TransportKind.PTY


@pytest.mark.parametrize(
    ("extra", "where", "why"),
    [
        ('[[locks]]\nid = "l1"\ntransport = "usb:/dev/x"\n', "locks[0].transport", "unknown"),
        ('[[locks]]\nid = "l1"\ntransport = "/dev/ttyUSB0"\n', "locks[0].transport", "kind:"),
        ('[[locks]]\nid = "l1"\ntransport = "serial:ttyUSB0"\n', "locks[0].transport", "absolute"),
        ('[[locks]]\nid = "l1"\ntransport = "ble:AA:BB:CC"\n', "locks[0].transport", "AA:BB"),
        ('[ble]\nhci = "hci0"\n', "ble.hci", "neither"),
        ('[ble]\nown_address = "F1"\n', "ble.own_address", "AA:BB"),
        ('[[locks]]\nid = "Lock 1"\ntransport = "serial:/dev/x"\n', "locks[0].id", "pattern"),
        (
            '[[locks]]\nid = "a"\ntransport = "serial:/dev/x"\n'
            '[[locks]]\nid = "a"\ntransport = "serial:/dev/y"\n',
            "locks",
            "twice",
        ),
        ("[sync]\nevent_poll_s = 0\n", "sync.event_poll_s", "greater than 0"),
        ("[sync]\nevent_pol_s = 5\n", "sync.event_pol_s", "Extra inputs"),
        (
            '[[card_readers]]\nid = "k1"\ntransport = "ble:F0:F0:F0:F0:F0:02"\n',
            "card_readers[0].transport",
            "serial line",
        ),
        ("[clinic]\nport = 70000\n", "clinic.port", "less than or equal"),
    ],
)
def test_errors_name_the_field(tmp_path: Path, extra: str, where: str, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, MINIMAL + extra))
    assert f"site.toml: {where}: " in str(info.value)
    assert why in str(info.value)


def test_missing_mqtt_section(tmp_path: Path) -> None:
    text = 'site = "gym-a"\ngateway = "gw-1"\nstate_dir = "/tmp/x"\n'
    with pytest.raises(ConfigError, match=r"site.toml: mqtt: Field required"):
        load_config(write(tmp_path, text))


def test_bad_slug_in_site(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"site.toml: site: "):
        load_config(write(tmp_path, MINIMAL.replace("gym-a", "Gym A")))


def test_not_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "site = "))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")


def test_ble_locks_and_their_radio(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + '[[locks]]\nid = "l1"\ntransport = "ble:F0:F0:F0:F0:F0:02"\n'
        + '[ble]\nhci = "tcp-client:127.0.0.1:9100"\n'
    )
    config = load_config(write(tmp_path, text))
    assert config.locks[0].spec.kind is TransportKind.BLE
    assert (config.ble.hci, config.has_ble_locks) == ("tcp-client:127.0.0.1:9100", True)
    assert load_config(write(tmp_path, MINIMAL)).ble.hci == "bleak"  # the Pi's default


def test_a_clinic_site(tmp_path: Path) -> None:
    config = load_config(Path(__file__).parents[2] / "deploy/sites/clinic-a.toml")
    assert config.clinic is not None
    assert (config.clinic.host, config.clinic.port, config.clinic.reply_timeout_s) == (
        "0.0.0.0",
        8080,
        3.0,
    )
    (reader,) = config.card_readers
    assert (reader.id, reader.baud, reader.walk_in_department) == (
        "clinic-a-kiosk-1",
        9600,
        "internal",
    )
    assert reader.spec.address == "/run/denen/clinic-a-kiosk-1"
    assert load_config(write(tmp_path, MINIMAL)).clinic is None  # a gym is no clinic
    text = MINIMAL + '[[card_readers]]\nid = "k1"\ntransport = "serial:/dev/ttyACM0"\n'
    defaults = load_config(write(tmp_path, text))
    assert defaults.clinic is not None
    assert defaults.clinic.port == 8080
    assert defaults.card_readers[0].walk_in_department is None


def test_the_documented_example_has_a_clinic(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, SITE_TOML_EXAMPLE))
    assert config.clinic is not None
    assert config.card_readers[0].baud == 9600


def test_a_clinic_keeps_each_staff_pin_as_a_hash_only(tmp_path: Path) -> None:
    clinic = MINIMAL + "[clinic]\n"
    config = load_config(write(tmp_path, clinic))
    assert config.clinic is not None
    assert (config.clinic.staff_pins, config.clinic.staff_pin_required) == ({}, True)
    hashed = str(PinHash.make("471100"))
    config = load_config(write(tmp_path, clinic + f'[clinic.staff]\ntanaka = "{hashed}"\n'))
    assert config.clinic is not None
    assert list(config.clinic.staff_pins) == ["tanaka"]
    assert config.clinic.staff_pins["tanaka"].matches("471100")
    assert not config.clinic.staff_pins["tanaka"].matches("471101")
    assert not config.clinic.shared_pin_left
    opened = load_config(write(tmp_path, clinic + "staff_pin_required = false\n"))
    assert opened.clinic is not None
    assert opened.clinic.staff_pin_required is False


def test_an_old_shared_staff_pin_is_reception_until_reception_has_its_own(
    tmp_path: Path,
) -> None:
    shared, own = str(PinHash.make("471100")), str(PinHash.make("582211"))
    clinic = MINIMAL + f'[clinic]\nstaff_pin_hash = "{shared}"\n'
    config = load_config(write(tmp_path, clinic))
    assert config.clinic is not None
    assert str(config.clinic.staff_pins["reception"]) == shared
    assert config.clinic.shared_pin_left
    config = load_config(write(tmp_path, clinic + f'[clinic.staff]\nreception = "{own}"\n'))
    assert config.clinic is not None
    assert str(config.clinic.staff_pins["reception"]) == own
    assert not config.clinic.shared_pin_left


@pytest.mark.parametrize(
    ("name", "why"),
    [("Tanaka", "in lower case, as tanaka"), ("田中", "a staff name is 1 to 32 letters")],
)
def test_a_staff_name_that_cannot_be_typed_at_the_login_is_refused(
    tmp_path: Path, name: str, why: str
) -> None:
    hashed = str(PinHash.make("471100"))
    text = MINIMAL + f'[clinic.staff]\n"{name}" = "{hashed}"\n'
    with pytest.raises(ConfigError, match=why):
        load_config(write(tmp_path, text))


def test_the_pages_certificate_and_key_go_together(tmp_path: Path) -> None:
    own = '[clinic]\ntls_cert = "/e/pages.crt"\ntls_key = "/e/pages.key"\n'
    clinic = load_config(write(tmp_path, MINIMAL + own)).clinic
    assert clinic is not None
    assert (clinic.tls_cert, clinic.tls_key) == (Path("/e/pages.crt"), Path("/e/pages.key"))
    with pytest.raises(ConfigError, match="tls_cert and tls_key go together"):
        load_config(write(tmp_path, MINIMAL + '[clinic]\ntls_cert = "/e/pages.crt"\n'))


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("4711", "never the PIN itself"),
        ("$scrypt$ln=14,r=8,p=1$c2FsdA$aGFzaA", "the salt needs 16+ bytes"),
        ("$scrypt$ln=40,r=8,p=1$" + "A" * 22 + "$" + "A" * 43, "ln must be 10 to 20"),
        ("$pbkdf2$i=1$salt$hash", "not a staff PIN hash"),
    ],
)
def test_a_staff_pin_hash_that_is_no_hash_is_refused_without_echoing_it(
    tmp_path: Path, value: str, why: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, MINIMAL + f'[clinic]\nstaff_pin_hash = "{value}"\n'))
    assert "site.toml: clinic.staff_pin_hash: " in str(info.value)
    assert why in str(info.value)
    assert value not in str(info.value)
