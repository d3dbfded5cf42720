"""Database: typed models, engine set-up and migrations."""

from cloud.db.base import Base
from cloud.db.engine import make_engine, make_sessionmaker
from cloud.db.migrate import alembic_config, migrate

__all__ = ["Base", "alembic_config", "make_engine", "make_sessionmaker", "migrate"]
