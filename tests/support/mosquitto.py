"""The tests start the same private broker as the demo (provisioning.broker)."""

from provisioning.broker import MOSQUITTO, Mosquitto, free_port, running_mosquitto, wait_for_port

__all__ = ["MOSQUITTO", "Mosquitto", "free_port", "running_mosquitto", "wait_for_port"]
