"""enrollment tokens and gateway certificates

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "enrollment_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("site", sa.String(length=40), nullable=False),
        sa.Column("gateway", sa.String(length=40), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("used_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrollment_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_enrollment_tokens_token_hash")),
    )
    op.create_table(
        "gateway_certificates",
        sa.Column("serial", sa.String(length=40), nullable=False),
        sa.Column("site", sa.String(length=40), nullable=False),
        sa.Column("gateway", sa.String(length=40), nullable=False),
        sa.Column("common_name", sa.String(length=100), nullable=False),
        sa.Column("not_after", sa.BigInteger(), nullable=False),
        sa.Column("issued_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("serial", name=op.f("pk_gateway_certificates")),
    )
    with op.batch_alter_table("gateway_certificates", schema=None) as batch_op:
        batch_op.create_index(
            "ix_gateway_certificates_site_gateway", ["site", "gateway"], unique=False
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("gateway_certificates", schema=None) as batch_op:
        batch_op.drop_index("ix_gateway_certificates_site_gateway")
    op.drop_table("gateway_certificates")
    op.drop_table("enrollment_tokens")
