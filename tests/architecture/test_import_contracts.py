"""The architecture as lint: `make lint` runs import-linter with the contracts in pyproject.toml.

The real tree keeps them (checked by `make lint` itself); here a fixture tree with deliberate
violations proves the contracts are live: each breaks the contract it should.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")

PACKAGES = [
    "stacks",
    "cdk_constructs",
    "phases",
    "capacity",
    "tools",
    "aipp",
    "aipp/core",
    "aipp/api",
    "aipp/worker",
    "upload_handler",
    "migration_gate",
    "aipp_contract",
]


def _contracts() -> str:
    """The project's own import-linter section of pyproject.toml, verbatim."""
    text = (ROOT / "pyproject.toml").read_text()
    return text[text.index("[tool.importlinter]") :]


def _tree(tmp: Path, modules: dict[str, str]) -> None:
    for package in PACKAGES:
        (tmp / package).mkdir(parents=True, exist_ok=True)
        (tmp / package / "__init__.py").write_text("")
    for path, source in modules.items():
        (tmp / path).write_text(source)
    (tmp / "pyproject.toml").write_text(_contracts())


def _lint(tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache", "--no-logo"],
        cwd=tmp,
        env={**os.environ, "PYTHONPATH": str(tmp)},
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_clean_fixture_keeps_every_contract(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "stacks/s.py": "import cdk_constructs\nimport phases\nimport capacity\n",
            "aipp/uses.py": "import aipp_contract\n",  # both sides import the contract
            "cdk_constructs/uses.py": "import aipp_contract\n",
        },
    )
    result = _lint(tmp_path)
    assert result.returncode == 0, result.stdout
    assert "6 kept, 0 broken" in result.stdout


def test_forbidden_imports_break_their_contracts(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "phases/upward.py": "import stacks\n",  # a lower layer importing a higher one
            "aipp/core/leak.py": "import aipp.api\n",  # the core knowing the API
            "upload_handler/cdk.py": "import aws_cdk\n",  # the runtime importing CDK
            "capacity/ours.py": "import phases\n",  # the planner importing the config
            "aipp_contract/cdk.py": "import aws_cdk\n",  # the contract importing CDK
        },
    )
    result = _lint(tmp_path)
    assert result.returncode == 1
    out = result.stdout
    for contract in (
        "Infrastructure layers: (app.py ->) stacks -> cdk_constructs -> phases BROKEN",
        "The runtime (images and Lambda handlers) never imports CDK BROKEN",
        "The capacity planner imports nothing of ours (stacks may read it) BROKEN",
        "The runtime core knows neither the API nor the workers BROKEN",
        "The infra/runtime contract stands alone: no CDK, neither side BROKEN",
    ):
        assert contract in out, out
    assert "The phase configuration is plain data: no CDK KEPT" in out
