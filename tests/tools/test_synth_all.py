"""`make synth`: every phase x env into cdk.out/phase<N>-<env>/ and one table.

Each phase x env is synthesized once per test run, by `synth_all.synth_one` itself, and shared
(`shared_synth_one`); the delivery pipeline is synthesized here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tools import synth_all

SynthOne = Callable[[int, str, Path], synth_all.SynthResult]


def test_synthesizes_every_phase_and_env_with_a_table(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    shared_synth_one: SynthOne,
) -> None:
    monkeypatch.setattr(synth_all, "synth_one", shared_synth_one)
    assert synth_all.main(["--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for phase in ("1", "2", "3"):
        for env in ("staging", "prod"):
            assembly = tmp_path / f"phase{phase}-{env}"
            assert (assembly / "manifest.json").exists()
            assert len(list(assembly.glob("*.template.json"))) == 7
            (row,) = [line for line in out.splitlines() if line.split()[:2] == [phase, env]]
            stacks, resources, findings = row.split()[2:5]
            assert stacks == "7" and int(resources) > 100 and findings == "0"
    assert "nag findings left" in out
    delivery = tmp_path / "delivery"
    assert (delivery / "manifest.json").exists()
    (row,) = [line for line in out.splitlines() if line.split()[:2] == ["-", "delivery"]]
    assert row.split()[2:5][2] == "0"


def test_a_finding_left_fails_the_run(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    shared_synth_one: SynthOne,
) -> None:
    real = shared_synth_one

    def with_a_finding(phase: int, env: str, outdir: Path) -> synth_all.SynthResult:
        result = real(phase, env, outdir)
        return synth_all.SynthResult(**{**result.__dict__, "findings": ["AwsSolutions-S1: X"]})

    monkeypatch.setattr(synth_all, "synth_one", with_a_finding)
    assert synth_all.main(["--out", str(tmp_path), "--phase", "1"]) == 1
    assert "cdk-nag finding(s) left" in capsys.readouterr().err
