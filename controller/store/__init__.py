"""The shared database layer: one async engine per process, one declarative Base, Alembic migrations.

Every feature that persists something (the WhatsApp sidecar now, calls/offers/agent states later)
declares its tables on :data:`Base` and ships a migration in ``controller/store/migrations``.
SQLite (default, WAL) and PostgreSQL (asyncpg) are both first-class: tests run on both.
"""

from controller.store.base import Base
from controller.store.engine import create_engine, is_sqlite, reading, writing
from controller.store.migrate import current_revision, upgrade

__all__ = ["Base", "create_engine", "current_revision", "is_sqlite", "reading", "upgrade", "writing"]
