"""Declarative Base with a naming convention, so Alembic migrations get stable constraint names."""

from __future__ import annotations

import importlib

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Every table of the product, whichever feature owns it."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# Modules that declare tables: the store's own, then whatever features registered. The store never
# names a feature; a feature registers its models here when its package is imported.
_MODEL_MODULES: dict[str, None] = dict.fromkeys(
    ("controller.store.history", "controller.store.agent_state", "controller.store.lease")
)


def register_models(*modules: str) -> None:
    """Called by a feature package (``controller/whatsapp/__init__.py``) for its table modules."""
    _MODEL_MODULES.update(dict.fromkeys(modules))


def model_modules() -> tuple[str, ...]:
    return tuple(_MODEL_MODULES)


def load_all_models(*extra: str) -> None:
    """Import every registered module that declares tables (autogenerate compares them all)."""
    for module in (*_MODEL_MODULES, *extra):
        importlib.import_module(module)
