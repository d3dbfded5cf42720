"""The lock's GATT profile rules: frames cut to the ATT MTU and put back together."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.lock_gatt import (
    ATT_DEFAULT_MTU,
    RX_CHAR_UUID,
    SERVICE_UUID,
    TX_CHAR_UUID,
    chunk_size,
    is_ble_address,
    split_for_att,
)
from protocol.lock_wire import FrameParser, FrameType, LockFrame


def test_uuids_are_distinct_128_bit_uuids() -> None:
    uuids = {SERVICE_UUID, RX_CHAR_UUID, TX_CHAR_UUID}
    assert len(uuids) == 3
    assert all(len(u.replace("-", "")) == 32 for u in uuids)


def test_the_smallest_mtu_carries_20_bytes_and_less_is_refused() -> None:
    assert chunk_size(ATT_DEFAULT_MTU) == 20
    with pytest.raises(ValueError, match="below the minimum"):
        chunk_size(22)


@given(st.binary(max_size=1024), st.integers(min_value=23, max_value=517))
def test_chunks_fit_the_mtu_and_join_back(payload: bytes, mtu: int) -> None:
    frame = bytes(LockFrame(FrameType.EVENTS, 7, payload))
    chunks = split_for_att(frame, mtu)
    assert all(0 < len(c) <= mtu - 3 for c in chunks)
    assert b"".join(chunks) == frame
    parser = FrameParser()
    frames = [f for c in chunks for f in parser.feed(c)]
    assert [f.payload for f in frames] == [payload]


@pytest.mark.parametrize(
    ("text", "ok"),
    [("F0:F0:F0:F0:F0:02", True), ("aa:bb:cc:dd:ee:ff", True), ("F0:F0", False), ("", False)],
)
def test_ble_addresses(text: str, ok: bool) -> None:
    assert is_ble_address(text) is ok
