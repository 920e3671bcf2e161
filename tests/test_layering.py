"""Dependency arrows point inwards: the process wiring does not import the demo built on it, and
the store does not import the features that keep tables in it (they register with the store)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "controller"


def imported(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports inside functions included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_process_wiring_does_not_import_the_demo() -> None:
    for name in ("app.py", "service.py"):
        demo = {m for m in imported(ROOT / name) if m.startswith(("controller.demo", "controller.sim"))}
        assert not demo, f"controller/{name} imports {sorted(demo)}: the demo imports the app, not back"


def test_store_imports_no_feature() -> None:
    allowed = ("controller.store", "controller.acd")  # its own modules; the engine's plain records
    for path in sorted((ROOT / "store").rglob("*.py")):
        ours = {m for m in imported(path) if m.startswith("controller.")}
        bad = {m for m in ours if not m.startswith(allowed)}
        assert not bad, f"{path.relative_to(ROOT.parent)} imports {sorted(bad)}"


def test_features_register_their_tables_with_the_store() -> None:
    import controller.whatsapp  # noqa: F401  (registers its models)
    from controller.store.base import Base, load_all_models, model_modules

    assert "controller.whatsapp.models" in model_modules()
    load_all_models()
    assert {"wa_conversations", "acd_calls", "acd_agent_presence"} <= set(Base.metadata.tables)
