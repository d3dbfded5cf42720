"""The gym: facilities and rooms, reservations, approvals, payments, access grants and
PINs, lock events, sync status, offline PINs, notifications and figures."""
