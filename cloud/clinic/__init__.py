"""The clinic side of the cloud: departments, appointments, check-in, queues, displays.

The queue rules themselves are pure and shared with the edge agent, which runs the queue
while the internet is down: :mod:`protocol.queue_rules`.
"""
