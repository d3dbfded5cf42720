"""Alembic migrations of the cloud database (a package so that wheels ship them)."""
