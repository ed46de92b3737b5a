"""Every assumption is named, sourced, overridable, and validated with the field named."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from capacity import AssumptionError, Assumptions, load_assumptions, plan
from capacity.assumptions import iter_leaves

DATED = re.compile(r"\b20\d\d-\d\d\b")


def test_every_default_has_a_dated_source_or_says_assumption(defaults: Assumptions) -> None:
    data = defaults.model_dump(mode="json")
    del data["sources"]
    missing = [path for path, _ in iter_leaves(data) if not defaults.source_of(path)]
    assert missing == []
    for path, _ in iter_leaves(data):
        source = defaults.source_of(path)
        assert DATED.search(source), f"{path}: source has no date: {source}"
    facts = [p for p, _ in iter_leaves(data) if "facts.md" in defaults.source_of(p)]
    assert "gpu.instances.g5.xlarge.on_demand_usd_per_hour" in facts


def test_every_field_documents_its_meaning_and_unit() -> None:
    def walk(model: type) -> list[str]:
        undocumented = []
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                undocumented += walk(ann)
            elif not field.description:
                undocumented.append(f"{model.__name__}.{name}")
        return undocumented

    assert walk(Assumptions) == []


def test_the_model_is_frozen(defaults: Assumptions) -> None:
    with pytest.raises(ValidationError):
        defaults.gpu.spot_share = 0.9  # type: ignore[misc]


def test_overrides_from_a_toml_file_and_a_json_file(tmp_path: Path) -> None:
    toml = tmp_path / "mine.toml"
    toml.write_text(
        '[gpu]\nspot_share = 0.0\n[gpu.instances."g5.xlarge"]\nspot_usd_per_hour = 0.3\n'
    )
    a = load_assumptions([toml])
    assert a.gpu.spot_share == 0.0
    assert a.gpu.instances["g5.xlarge"].spot_usd_per_hour == 0.3
    assert a.gpu.instances["g5.xlarge"].on_demand_usd_per_hour == 1.006  # merged, not replaced
    assert a.source_of("gpu.spot_share") == f"override from {toml}"
    base = plan(50_000, 3.0, with_sensitivity=False)
    assert plan(50_000, 3.0, a, with_sensitivity=False).self_hosted_monthly_usd > (
        base.self_hosted_monthly_usd
    )

    js = tmp_path / "mine.json"
    js.write_text(json.dumps({"bedrock": {"model": "nova-micro"}}))
    cheap = load_assumptions([js])
    assert plan(50_000, 3.0, cheap, with_sensitivity=False).managed_lines[1].monthly_usd < 10


def test_set_overrides_any_path_including_dotted_keys() -> None:
    a = load_assumptions(
        sets=[
            "gpu.instances.g6.xlarge.spot_usd_per_hour=0.25",
            "gpu.stt.instance_type=g6.xlarge",
            "load.hourly_profile=[" + ",".join(["1"] * 12 + ["3"] * 12) + "]",
        ]
    )
    assert a.gpu.stt.instance_type == "g6.xlarge"
    assert a.gpu.instances["g6.xlarge"].spot_usd_per_hour == 0.25
    assert a.load.peak_to_average == 1.5  # 3 / mean 2
    assert a.source_of("load.hourly_profile.5") == "override from --set"


@pytest.mark.parametrize(
    ("assignment", "field"),
    [
        ("gpu.target_utilisation=1.2", "gpu.target_utilisation"),
        ("gpu.stt.audio_minutes_per_gpu_minute=0", "gpu.stt.audio_minutes_per_gpu_minute"),
        ("gpu.spot_share=-0.1", "gpu.spot_share"),
        ("gpu.llm.instance_type=p9.huge", "gpu.llm.instance_type"),
        ("transcribe.tiers.0.usd_per_minute=-1", "transcribe.tiers.0.usd_per_minute"),
        ("bedrock.model=gpt-9", "bedrock.model"),
        ("gpu.instances.g5.xlarge.spot_usd_per_hour=5", "gpu.instances.g5.xlarge"),
        ("phases.fixed.2.1.size=m9.huge", "phases.fixed.2.1.size"),
        ("gpu.spot_shar=0.3", "gpu.spot_shar"),
        ("load.hours_per_month=Infinity", "load.hours_per_month"),
        ("load.hours_per_month=NaN", "load.hours_per_month"),
        ("load.hours_per_month=1e309", "load.hours_per_month"),
        ("gpu.spot_share=NaN", "gpu.spot_share"),
        ("gpu.instances.g5.xlarge.on_demand_usd_per_hour=Infinity", "on_demand_usd_per_hour"),
        ("gpu.llm.decode_tokens_per_second=-Infinity", "gpu.llm.decode_tokens_per_second"),
        ("transcribe.tiers.1.up_to_minutes=NaN", "transcribe.tiers.1.up_to_minutes"),
        ("load.hourly_profile=[1, 2]", "load.hourly_profile"),
        ("load.hourly_profile=" + str([0] * 24), "load.hourly_profile"),
        ("load.hourly_profile.3=Infinity", "load.hourly_profile.3"),
        ("load.peak_to_average=Infinity", "load.hourly_profile"),  # replaced: named
        ("bedrock.output_tokens_per_summary=300", "summary.output_tokens"),
    ],
)
def test_invalid_values_are_rejected_in_one_line_naming_the_field(
    assignment: str, field: str
) -> None:
    with pytest.raises(AssumptionError) as err:
        load_assumptions(sets=[assignment])
    message = str(err.value)
    assert field in message
    assert "\n" not in message


def test_unknown_keys_in_a_file_are_rejected(tmp_path: Path) -> None:
    f = tmp_path / "typo.toml"
    f.write_text("[gpu]\ntarget_utilization = 0.8\n")
    with pytest.raises(AssumptionError, match=r"gpu\.target_utilization"):
        load_assumptions([f])
    with pytest.raises(AssumptionError, match="cannot read"):
        load_assumptions([tmp_path / "missing.toml"])
