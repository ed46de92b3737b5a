"""docs/capacity.md shows what the model computes: its generated tables match a fresh render."""

from __future__ import annotations

from pathlib import Path

import pytest
from capacity_test_paths import REPO

from capacity import AssumptionError
from capacity.cli import main
from capacity.docs import BLOCKS, render

DOC = REPO / "docs" / "capacity.md"


def test_the_docs_tables_match_the_model() -> None:
    text = DOC.read_text(encoding="utf-8")
    for name in BLOCKS:
        assert f"<!-- capacity-docs:{name} -->" in text
    fresh, stale = render(text)
    assert stale == [], f"run `make capacity-docs`: {', '.join(stale)} out of date"
    assert fresh == text
    assert "| 1M | 1 min | 2 | 3 / 3 |" in text  # the 1M x 1 min case, in whole GPUs


def test_check_fails_on_a_stale_table_and_write_mends_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = tmp_path / "capacity.md"
    doc.write_text(
        DOC.read_text(encoding="utf-8").replace("| 1K | 0.5 min | 1 |", "| 1K | 0.5 min | 3 |")
    )
    assert main(["docs", str(doc), "--check"]) == 1
    assert "sweep" in capsys.readouterr().err
    assert main(["docs", str(doc)]) == 0
    assert doc.read_text(encoding="utf-8") == DOC.read_text(encoding="utf-8")
    assert main(["docs", str(doc), "--check"]) == 0


def test_a_document_without_the_markers_is_refused() -> None:
    with pytest.raises(AssumptionError, match="capacity-docs:example"):
        render("# nothing generated here\n")
