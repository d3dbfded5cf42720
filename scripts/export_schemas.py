"""Writes the JSON Schema of every MQTT message to docs/schemas/ (run after changing
protocol/messages.py; a test fails while the files are stale)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from protocol.messages import json_schemas  # noqa: E402

OUT = ROOT / "docs" / "schemas"


def render() -> dict[str, str]:
    return {
        f"{name}.schema.json": json.dumps(schema, indent=2, sort_keys=True) + "\n"
        for name, schema in json_schemas().items()
    }


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote docs/schemas/{name}")


if __name__ == "__main__":
    main()
