"""Every domain's tables on one :class:`~cloud.db.base.Base`, for Alembic and for the
composition root: importing this module registers them all."""

from cloud.clinic import models as clinic_models
from cloud.core import models as core_models
from cloud.db.base import Base
from cloud.fleet import models as fleet_models
from cloud.gym import models as gym_models

__all__ = ["Base", "clinic_models", "core_models", "fleet_models", "gym_models"]
