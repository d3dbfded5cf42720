"""The kiosk card reader simulator: one line per card on a serial line."""

from firmware_sim.card_reader.firmware import CardReaderFirmware, CardReaderView

__all__ = ["CardReaderFirmware", "CardReaderView"]
