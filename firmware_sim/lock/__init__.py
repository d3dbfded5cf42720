"""The keypad lock simulator: a sans-IO firmware and the hosts that put it on a wire."""

from firmware_sim.lock.firmware import LockFirmware, LockView

__all__ = ["LockFirmware", "LockView"]
