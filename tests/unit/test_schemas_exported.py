"""The JSON Schemas in docs/ are the ones the code validates with."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_exported_schemas_are_current() -> None:
    spec = importlib.util.spec_from_file_location(
        "export_schemas", ROOT / "scripts/export_schemas.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, text in module.render().items():
        path = ROOT / "docs" / "schemas" / name
        assert path.exists(), f"{path} missing: run python scripts/export_schemas.py"
        assert path.read_text() == text, f"{path} is stale: run python scripts/export_schemas.py"
