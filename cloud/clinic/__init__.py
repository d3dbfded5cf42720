"""The clinic side of the cloud: departments, appointments, check-in, queues, displays.

The queue rules themselves are pure and shared with the edge agent, which runs the queue
while the internet is down: :mod:`protocol.queue_rules`.

Where things are:

- :mod:`~cloud.clinic.day`: a site's day loaded under the site's lock, one
  ``DepartmentQueue`` per department, each change written back;
- :mod:`~cloud.clinic.checkin`: card to ticket (appointments, walk-ins, second tap);
- :mod:`~cloud.clinic.staff`: call next, call, recall, start, done, no-show, skip,
  transfer; the staff's queue view;
- :mod:`~cloud.clinic.agent_sync`: the agent's ``checkin`` / ``clinic_action`` events,
  applied once each, offline replays included;
- :mod:`~cloud.clinic.publish`: ``clinic_state`` and ``display_state`` for a site, and
  the :class:`~cloud.clinic.publish.ClinicChanged` change the MQTT bridge listens for;
- :mod:`~cloud.clinic.appointments`: imports of patients and appointments;
- :mod:`~cloud.clinic.announcements` and :mod:`~cloud.clinic.jobs`: city announcements
  and their expiry; :mod:`~cloud.clinic.notify`: telling patients (email);
- :mod:`~cloud.clinic.figures`, :mod:`~cloud.clinic.audit`, :mod:`~cloud.clinic.sites`;
- :mod:`~cloud.clinic.services`: all of them built once; the API is
  :mod:`cloud.api.clinic`, the tables :mod:`cloud.clinic.models`.
"""
