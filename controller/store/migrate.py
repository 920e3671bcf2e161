"""Alembic, driven from code: ``acdctl db upgrade`` and the automatic upgrade at start (SQLite).

The migration scripts live in this package (``migrations/``), so an installed wheel can upgrade
its own database without an ``alembic.ini`` lying around.
"""

from __future__ import annotations

import logging
from pathlib import Path

# Alembic announces each of its plugins at INFO when first imported: noise in an admin's log.
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402
from alembic.runtime.migration import MigrationContext  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: E402

__all__ = ["alembic_config", "current_revision", "head_revision", "upgrade"]

log = logging.getLogger("controller.store")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def upgrade(engine: AsyncEngine, revision: str = "head") -> str | None:
    """Apply migrations up to ``revision``; returns the revision the database is at."""

    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("alembic").setLevel(logging.WARNING)  # its per-plugin INFO lines are noise

    def _run(sync_conn) -> None:  # noqa: ANN001 - a sync Connection
        cfg = alembic_config()
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, revision)

    async with engine.begin() as conn:
        await conn.run_sync(_run)
    current = await current_revision(engine)
    log.info("database migrated", extra={"revision": current, "dialect": engine.dialect.name})
    return current


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
