"""Export the OpenAPI document: `python -m aipp.api.openapi [PATH]` (default docs/openapi.json)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from aipp.api.main import create_app
from aipp.core.config import Settings


def render() -> str:
    """The document as checked in: stable key order, two-space indent, final newline."""
    return json.dumps(create_app(Settings()).openapi(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    target = Path(argv[0]) if argv else Path("docs/openapi.json")
    target.write_text(render(), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
