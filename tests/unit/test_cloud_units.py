"""Pure parts of the cloud: settings rules, passwords, local time."""

from __future__ import annotations

import hashlib
from datetime import date, time

import pytest
from pydantic import ValidationError

from cloud.clinic.publish import ClinicChanged
from cloud.core.auth import basic_credentials
from cloud.core.bus import ChangeBus
from cloud.core.users import hash_password, needs_rehash, verify_password
from cloud.dashboard.labels import EVENT_LABELS
from cloud.gym.access import AccessChanged
from cloud.localtime import format_span, slot_from_form
from cloud.settings import CloudSettings
from protocol.messages import LockEventKind
from tests.support.cloud import basic

GOOD_SECRET = "k" * 40


@pytest.mark.parametrize("secret", ["", "change-me", "secret", "short"])
def test_settings_refuse_placeholder_secrets(secret: str) -> None:
    with pytest.raises(ValidationError, match="DENEN_CLOUD_SECRET_KEY"):
        CloudSettings(secret_key=secret)


def test_settings_allow_an_empty_secret_in_dev_and_make_one_up() -> None:
    settings = CloudSettings(dev=True)
    assert len(settings.secret_key) >= 32
    assert settings.secret_key not in repr(settings)


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DENEN_CLOUD_SECRET_KEY", GOOD_SECRET)
    monkeypatch.setenv("DENEN_CLOUD_METRICS_TOKEN", GOOD_SECRET)
    monkeypatch.setenv("DENEN_CLOUD_MQTT_PORT", "1999")
    settings = CloudSettings()
    assert settings.mqtt_port == 1999
    assert settings.pin_margin_before_s == 900
    assert settings.timezone == "Asia/Tokyo"


def test_password_hash_round_trip_and_salt() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first.startswith("$argon2id$")
    assert first != second  # salted
    assert verify_password("correct horse", first)
    assert not verify_password("wrong horse", first)
    assert not verify_password("correct horse", "garbage")
    assert not needs_rehash(first)


def test_a_legacy_scrypt_hash_still_verifies_and_asks_to_be_rehashed() -> None:
    # the format stored before argon2id: scrypt$n$r$p$salt$hash
    salt = bytes(range(16))
    digest = hashlib.scrypt(b"correct horse", salt=salt, n=2**14, r=8, p=1, dklen=32)
    legacy = f"scrypt${2**14}$8$1${salt.hex()}${digest.hex()}"
    assert verify_password("correct horse", legacy)
    assert not verify_password("wrong horse", legacy)
    assert needs_rehash(legacy)


def test_basic_credentials() -> None:
    assert basic_credentials(basic("a", "b:c")["Authorization"]) == ("a", "b:c")
    assert basic_credentials("Basic !!!") is None
    assert basic_credentials(None) is None


def test_booking_form_is_read_in_tokyo_time() -> None:
    zone = CloudSettings(dev=True).zone
    start, end = slot_from_form(date(2027, 1, 15), time(10, 0), 1.5, zone)
    assert start == 1_799_974_800  # 2027-01-15T01:00:00Z
    assert end - start == 5400
    assert format_span(start, end, zone) == "10:00\u201311:30 on 2027-01-15"


def test_every_lock_event_kind_has_words_for_the_manager() -> None:
    assert set(LockEventKind) == set(EVENT_LABELS)


def test_the_change_bus_tells_each_type_s_subscribers_and_survives_a_failing_one() -> None:
    bus = ChangeBus()
    access: list[AccessChanged] = []
    clinic: list[ClinicChanged] = []

    def broken(_change: AccessChanged) -> None:
        raise RuntimeError("the bridge is gone")

    bus.subscribe(AccessChanged, broken)
    bus.subscribe(AccessChanged, access.append)
    bus.subscribe(ClinicChanged, clinic.append)
    bus.publish(AccessChanged("gym-a", "gw-1"))
    bus.publish(ClinicChanged("clinic-a", "gw-1"))
    bus.publish(AccessChanged("gym-b", "gw-1"))
    assert access == [AccessChanged("gym-a", "gw-1"), AccessChanged("gym-b", "gw-1")]
    assert clinic == [ClinicChanged("clinic-a", "gw-1")]
    ChangeBus().publish(AccessChanged("gym-a", "gw-1"))  # no subscriber: nobody told, no error
