"""Attack: a 4-digit keypad PIN is guessed in at most 10,000 tries, a few hundred a day
past the keypad's lockout. The cloud refuses to start with a PIN length outside 6-10."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.security.conftest import settings_for, start_cloud


def test_cloud_refuses_to_start_with_four_digit_pins(tmp_path: Path) -> None:
    ended = start_cloud({"DENEN_CLOUD_PIN_LENGTH": "4"}, tmp_path)
    assert not ended.started, "the cloud started with 4-digit PINs"
    assert ended.returncode == 2
    assert "DENEN_CLOUD_PIN_LENGTH" in ended.stderr
    assert "6 to 10 digits" in ended.stderr


@pytest.mark.parametrize("length", [5, 11, 12])
def test_settings_refuse_pin_lengths_outside_six_to_ten(tmp_path: Path, length: int) -> None:
    with pytest.raises(ValueError, match="6 to 10 digits"):
        settings_for(tmp_path, pin_length=length)


@pytest.mark.parametrize("length", [6, 10])
def test_settings_take_pin_lengths_six_to_ten(tmp_path: Path, length: int) -> None:
    assert settings_for(tmp_path, pin_length=length).pin_length == length
