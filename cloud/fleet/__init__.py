"""The fleet controller: sites, gateways and devices, their twins and health, alerts mailed
to on-call, commands with replies, and firmware and config rollouts in rings.

``rules`` holds the pure decisions (availability, alert conditions, the battery forecast,
the rollout gate); the services around it only load, store and publish."""
