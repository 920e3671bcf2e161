"""Alembic environment: uses the connection handed over by controller.store.migrate.upgrade.

Run through ``acdctl db upgrade`` (or :func:`controller.store.upgrade`); plain ``alembic`` with
``sqlalchemy.url`` set also works (an async engine is created here for it).
"""

from __future__ import annotations

import asyncio
import importlib

from alembic import context

from controller.store.base import Base, load_all_models

config = context.config
# Tables of features registered so far (their packages call ``register_models``); a plain
# ``alembic`` run names the feature packages to import with ``-x features=controller.whatsapp``.
for package in filter(None, context.get_x_argument(as_dictionary=True).get("features", "").split(",")):
    importlib.import_module(package)
load_all_models()
target_metadata = Base.metadata


def _configure_and_run(connection) -> None:  # noqa: ANN001
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata, literal_binds=True
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_new_engine() -> None:
    from controller.store.engine import create_engine

    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_configure_and_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    _run_offline()
elif config.attributes.get("connection") is not None:
    _configure_and_run(config.attributes["connection"])
else:
    asyncio.run(_run_with_new_engine())
