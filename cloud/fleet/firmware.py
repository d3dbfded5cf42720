"""Signed firmware images uploaded by ops, kept in the database (at most 1 MiB, what one
``firmware-update`` command can carry).

The cloud parses the image (:mod:`protocol.firmware_image`: magic, header, sizes) to learn
its kind, model and version, but does not check the signature: the devices do, with the
release keys they trust, and refuse an image they cannot verify (the reply then says why).
"""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.errors import InvalidRequestError, NotFoundError
from cloud.fleet.audit import audit
from cloud.fleet.kinds import DeviceKind
from cloud.fleet.models import FirmwareImageRow
from cloud.fleet.views import FirmwareView
from protocol import firmware_image as fw
from protocol.clock import Clock
from protocol.messages import FIRMWARE_IMAGE_MAX

_KINDS = {fw.DeviceKind.LOCK: DeviceKind.LOCK, fw.DeviceKind.DISPLAY: DeviceKind.DISPLAY}


def firmware_view(row: FirmwareImageRow) -> FirmwareView:
    return FirmwareView(
        id=row.id,
        kind=row.kind.value,
        model=row.model,
        version=row.version,
        sha256=row.sha256,
        size=row.size,
        uploaded_by=row.uploaded_by,
        uploaded_at=row.uploaded_at,
    )


class FirmwareService:
    """Upload and list images."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def upload(self, data: bytes, actor: str) -> FirmwareView:
        """Store an image (the same bytes again return the stored one)."""
        if len(data) > FIRMWARE_IMAGE_MAX:
            raise InvalidRequestError(
                f"an image is at most {FIRMWARE_IMAGE_MAX} bytes (one command carries it)"
            )
        try:
            image = fw.FirmwareImage.from_bytes(data)
        except fw.ImageError as exc:
            raise InvalidRequestError(f"not a firmware image: {exc}") from None
        digest = hashlib.sha256(data).hexdigest()
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            known = session.scalars(
                select(FirmwareImageRow).where(FirmwareImageRow.sha256 == digest)
            ).first()
            if known is not None:
                return firmware_view(known)
            row = FirmwareImageRow(
                kind=_KINDS[image.header.kind],
                model=image.header.model,
                version=str(image.header.version),
                sha256=digest,
                size=len(data),
                key_id=image.header.key_id.hex(),
                data=data,
                uploaded_by=actor,
                uploaded_at=now,
            )
            session.add(row)
            session.flush()
            audit(
                session,
                now,
                actor,
                "firmware.upload",
                subject=f"image:{row.id}",
                detail={"describe": image.header.describe(), "sha256": digest},
            )
            return firmware_view(row)

    def images(self) -> list[FirmwareView]:
        """Newest first."""
        with self._sessions() as session:
            rows = session.scalars(select(FirmwareImageRow).order_by(FirmwareImageRow.id.desc()))
            return [firmware_view(r) for r in rows]

    def image(self, image_id: int) -> FirmwareView:
        with self._sessions() as session:
            row = session.get(FirmwareImageRow, image_id)
            if row is None:
                raise NotFoundError(f"no firmware image #{image_id}")
            return firmware_view(row)
