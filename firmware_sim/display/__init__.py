"""The call-number display simulator: a sans-IO firmware and the host that puts it on a pty."""

from firmware_sim.display.firmware import DisplayFirmware, DisplayView, RoomView

__all__ = ["DisplayFirmware", "DisplayView", "RoomView"]
