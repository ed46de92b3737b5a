"""Units by responsibility: no function over 60 lines in the stacks, the constructs, the contract
and the runtime, unless a comment on its `def` line says why (`# long: <reason>`)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TREES = ["stacks", "cdk_constructs", "aipp_contract", "worker_images/aipp", "lambda_src"]
MAX_LINES = 60


def long_functions(root: Path = ROOT, trees: list[str] = TREES) -> list[str]:
    found = []
    for tree in trees:
        for path in sorted((root / tree).rglob("*.py")):
            source = path.read_text()
            lines = source.splitlines()
            for node in ast.walk(ast.parse(source)):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                header = lines[node.lineno - 1]
                if length > MAX_LINES and "# long:" not in header:
                    found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({length})")
    return found


def test_no_function_is_longer_than_60_lines_without_a_reason() -> None:
    assert long_functions() == []


def test_a_long_function_is_found_unless_it_says_why(tmp_path: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_LINES))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(
        f"def short():\n    return 1\n\n\ndef long():\n{body}\n\n"
        f"def explained():  # long: a table written whole\n{body}"
    )
    assert long_functions(tmp_path, ["pkg"]) == [f"pkg/m.py:5 long ({MAX_LINES + 1})"]
