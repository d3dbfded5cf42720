"""bookings confirmed from their mail; slot PINs sealed; mail bodies without PINs

- ``reservations.status`` admits ``unconfirmed``; ``reservations.confirm_until``;
- ``access_grants.pin`` (plain digits) becomes ``pin_sealed`` (AES-GCM under a key derived
  from ``DENEN_CLOUD_SECRET_KEY``, as ``cloud.gym.pin_seal`` does): every existing PIN is
  sealed, so the upgrade needs the secret key when there are any;
- ``mail_outbox.redacted_body``: existing mails get their PINs and booking links blanked
  in it, and a sent one keeps only that copy.

A downgrade opens the PINs again (with the same key), and cancels unconfirmed bookings.

Revision ID: 0013
Revises: 0012
Create Date: 2027-01-15 00:00:00
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUSES = ("pending", "approved", "rejected", "cancelled")
# cloud.core.mail.NOT_SHOWN and cloud.gym.pin_seal's v1 format as of this revision (the
# database layer imports no domain; tests/integration/test_cloud_migrations.py opens the
# sealed PINs with cloud.gym.pin_seal)
_NOT_SHOWN = "[宛先にのみ送信・表示しません / sent to the recipient only, not shown]"
# what the mails before this revision carried that was the citizen's alone
_PRIVATE = (re.compile(r"\S+/r/\S+\?token=\S+"), re.compile(r"(?<=PIN: )\d{6,12}"))


def _status(*extra: str) -> sa.Enum:
    return sa.Enum(
        *extra,
        *_STATUSES,
        name="status",
        native_enum=False,
        create_constraint=True,
        length=16,
    )


def _aead() -> AESGCM:
    config = op.get_context().config
    key = config.attributes.get("secret_key") if config is not None else None
    key = key or os.environ.get("DENEN_CLOUD_SECRET_KEY")
    if not key:
        raise RuntimeError(
            "migration 0013 seals the stored PINs with the cloud's secret key: run it with "
            "DENEN_CLOUD_SECRET_KEY set (the cloud's start-up passes it)"
        )
    return AESGCM(hmac.new(key.encode(), b"denen-pin-seal-v1", hashlib.sha256).digest())


def _seal(aead: AESGCM, grant_id: str, pin: str) -> str:
    nonce = os.urandom(12)
    sealed = aead.encrypt(nonce, pin.encode(), grant_id.encode())
    return "v1." + base64.urlsafe_b64encode(nonce + sealed).decode()


def _open(aead: AESGCM, grant_id: str, sealed: str) -> str:
    raw = base64.urlsafe_b64decode(sealed.removeprefix("v1."))
    return aead.decrypt(raw[:12], raw[12:], grant_id.encode()).decode()


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.alter_column(
            "status", existing_type=_status(), type_=_status("unconfirmed"), existing_nullable=False
        )
        batch_op.add_column(sa.Column("confirm_until", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("access_grants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pin_sealed", sa.String(length=64), nullable=True))
    conn = op.get_bind()
    plain = conn.execute(sa.text("SELECT id, pin FROM access_grants WHERE pin IS NOT NULL")).all()
    if plain:
        aead = _aead()
        for grant_id, pin in plain:
            conn.execute(
                sa.text("UPDATE access_grants SET pin_sealed = :sealed WHERE id = :id"),
                {"sealed": _seal(aead, grant_id, pin), "id": grant_id},
            )
    with op.batch_alter_table("access_grants", schema=None) as batch_op:
        batch_op.drop_column("pin")
    with op.batch_alter_table("mail_outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("redacted_body", sa.Text(), nullable=True))
    for mail_id, body, state in conn.execute(
        sa.text("SELECT id, body, state FROM mail_outbox")
    ).all():
        redacted = body
        for pattern in _PRIVATE:
            redacted = pattern.sub(_NOT_SHOWN, redacted)
        if redacted != body:
            conn.execute(
                sa.text(
                    "UPDATE mail_outbox SET redacted_body = :redacted, body = :body WHERE id = :id"
                ),
                {
                    "redacted": redacted,
                    "body": redacted if state == "sent" else body,  # a sent one keeps no PIN
                    "id": mail_id,
                },
            )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("mail_outbox", schema=None) as batch_op:
        batch_op.drop_column("redacted_body")
    with op.batch_alter_table("access_grants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pin", sa.String(length=12), nullable=True))
    conn = op.get_bind()
    sealed = conn.execute(
        sa.text("SELECT id, pin_sealed FROM access_grants WHERE pin_sealed IS NOT NULL")
    ).all()
    if sealed:
        aead = _aead()
        for grant_id, value in sealed:
            conn.execute(
                sa.text("UPDATE access_grants SET pin = :pin WHERE id = :id"),
                {"pin": _open(aead, grant_id, value), "id": grant_id},
            )
    with op.batch_alter_table("access_grants", schema=None) as batch_op:
        batch_op.drop_column("pin_sealed")
    op.execute(
        "UPDATE reservations SET status = 'cancelled', cancelled_by = 'rule:unconfirmed', "
        "cancel_reason = 'not confirmed before a downgrade' WHERE status = 'unconfirmed'"
    )
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.drop_column("confirm_until")
        batch_op.alter_column(
            "status", existing_type=_status("unconfirmed"), type_=_status(), existing_nullable=False
        )
