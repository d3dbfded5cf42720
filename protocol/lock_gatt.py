"""The lock's GATT profile: how :mod:`protocol.lock_wire` frames travel over BLE.

One primary service with two characteristics; the bytes are exactly the serial line's:

* ``RX`` (agent → lock): *write* (with response). The agent splits a frame into writes of
  at most ``ATT_MTU - 3`` bytes; the lock feeds them to its
  :class:`~protocol.lock_wire.FrameParser`, which reassembles them.
* ``TX`` (lock → agent): *notify*. The lock splits its frames the same way; the agent's
  parser reassembles them.

Both characteristics need an encrypted link, and the lock accepts only LE Secure
Connections pairing with MITM protection (passkey shown on the lock's display): ``PAIR``
carries the lock's keys in clear inside the frame, so the radio link must hide them.

The lock advertises ``COMPLETE_LOCAL_NAME`` = its lock id and the service UUID, so a scan
can list Denen locks by name. Sans-IO: constants and the chunking rule only.
"""

from __future__ import annotations

import re

SERVICE_UUID = "3954c1b5-2528-45cf-9eff-03a24c0e0001"
RX_CHAR_UUID = "3954c1b5-2528-45cf-9eff-03a24c0e0002"  # agent writes frames here
TX_CHAR_UUID = "3954c1b5-2528-45cf-9eff-03a24c0e0003"  # lock notifies frames here

ATT_DEFAULT_MTU = 23  # what every link starts with (Core spec Vol 3 Part F 3.2.8)
ATT_PREFERRED_MTU = 247  # asked for after connecting: one frame of 1 KB in 5 writes
ATT_HEADER_LEN = 3  # opcode + handle in a write request or a notification
PASSKEY_DIGITS = 6

_ADDRESS = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")


def is_ble_address(text: str) -> bool:
    """``AA:BB:CC:DD:EE:FF`` (either case)."""
    return bool(_ADDRESS.fullmatch(text))


def chunk_size(att_mtu: int) -> int:
    """The most frame bytes one ATT write or notification carries at ``att_mtu``."""
    if att_mtu < ATT_DEFAULT_MTU:
        raise ValueError(f"ATT MTU {att_mtu} is below the minimum {ATT_DEFAULT_MTU}")
    return att_mtu - ATT_HEADER_LEN


def split_for_att(data: bytes, att_mtu: int) -> list[bytes]:
    """``data`` in order, cut into pieces that each fit one write or notification."""
    size = chunk_size(att_mtu)
    return [data[i : i + size] for i in range(0, len(data), size)]
