"""The shared store as the sidecar uses it: migrations == models, SQLite pragmas, ``acdctl db upgrade``."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from controller import cli
from controller.store import create_engine, current_revision, upgrade
from controller.store.base import Base, load_all_models
from controller.store.migrate import head_revision


async def test_migrations_create_exactly_the_whatsapp_models(engine) -> None:
    load_all_models()

    def diff(sync_conn):  # noqa: ANN001
        ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        return compare_metadata(ctx, Base.metadata)

    async with engine.connect() as conn:
        changes = await conn.run_sync(diff)
    mine = [c for c in changes if "wa_" in repr(c)]
    assert mine == []
    assert await current_revision(engine) == head_revision()


async def test_sqlite_pragmas_and_data_dir(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/nested/data/acd.sqlite3"
    engine = create_engine(url)
    try:
        await upgrade(engine)
        async with engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 30000
            assert (await conn.execute(text("PRAGMA synchronous"))).scalar() == 2  # FULL
        assert (tmp_path / "nested" / "data" / "acd.sqlite3").exists()
        assert await upgrade(engine) == head_revision()  # idempotent
    finally:
        await engine.dispose()


def test_acdctl_db_upgrade(tmp_path: Path, monkeypatch, capsys) -> None:
    for key in list(__import__("os").environ):
        if key.startswith("ACD_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ACD_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/x.sqlite3")
    assert cli.main(["db", "upgrade"]) == 0
    assert f"at revision {head_revision()}" in capsys.readouterr().out
    assert cli.main(["db"]) == 2  # an action is required
