"""The agent's clinic side: kiosk check-in, the local staff page, and running the queues
while the internet is down.

- :mod:`edge.clinic.desk` — who runs the queues (cloud or agent), check-in, staff actions,
  handing back after an outage;
- :mod:`edge.clinic.kiosk` — a card reader's serial line to the desk;
- :mod:`edge.clinic.web` — the kiosk screens, the staff page and their JSON API;
- :mod:`edge.clinic.staff_access` — the staff PIN: its hash, the wrong-PIN lock, sessions;
  :mod:`edge.clinic.staff_cli` — ``denen-agent clinic set-staff-pin``;
- :mod:`edge.clinic.day_store` — the desk's state in SQLite, purged at the end of the day.
"""
