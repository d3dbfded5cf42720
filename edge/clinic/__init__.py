"""The agent's clinic side: kiosk check-in, the local staff page, and running the queues
while the internet is down.

- :mod:`edge.clinic.desk` — who runs the queues (cloud or agent), check-in, staff actions,
  handing back after an outage; the coordinator of its parts:

  - :mod:`edge.clinic.desk_state` — what the desk knows of the day (cloud's, agent's, link);
  - :mod:`edge.clinic.in_flight` — requests sent to the cloud and the answers awaited;
  - :mod:`edge.clinic.local_run` — the agent running the queues: check-in, staff actions,
    the journal;
  - :mod:`edge.clinic.handover` — taking the open requests back, handing the queues back;
  - :mod:`edge.clinic.kiosk_screens` — what a kiosk shows, a card tapped again;
  - :mod:`edge.clinic.local_display` — what the displays show while the agent runs them;
  - :mod:`edge.clinic.outcome` — who decided, and the result;
  - :mod:`edge.clinic.local_queues` — the queue rules applied to the agent's clinic state;
- :mod:`edge.clinic.kiosk` — a card reader's serial line to the desk;
- :mod:`edge.clinic.web` — the kiosk screens, the staff page and their JSON API;
- :mod:`edge.clinic.staff_access` — staff names and their PINs: hashes, the wait after
  wrong PINs, sessions; :mod:`edge.clinic.staff_cli` — ``denen-agent clinic
  set-staff-pin|remove-staff|list-staff``;
- :mod:`edge.clinic.day_store` — the desk's state in SQLite, purged at the end of the day.
"""
