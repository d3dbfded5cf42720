"""The clinic side of the cloud: check-in, queues and call-number displays.

:mod:`cloud.clinic.queue_rules` holds every queue rule in one pure module (no DB, no I/O).
"""
