"""Build the one validated `PhaseConfig` from what the user typed (`-c phase=`, `-c env=`, ...).

Every failure is a `ConfigError` whose message is one readable line naming the field and, where
there is a closed set, the valid choices. `app.py` prints it and exits non-zero.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from phases.catalog import OVERLAYS, PHASES, Tree
from phases.models import Env, Phase, PhaseConfig

PHASE_ALIASES: dict[str, Phase] = {
    "1": Phase.MVP,
    "mvp": Phase.MVP,
    "2": Phase.GROWTH,
    "growth": Phase.GROWTH,
    "3": Phase.SCALE,
    "scale": Phase.SCALE,
}


class ConfigError(ValueError):
    """A configuration mistake, explained in one line."""


def parse_phase(value: object) -> Phase:
    key = str(value).strip().lower()
    if key not in PHASE_ALIASES:
        raise ConfigError(
            f"unknown phase {value!r}: choose one of {', '.join(PHASE_ALIASES)}, auto"
        )
    return PHASE_ALIASES[key]


def parse_env(value: object) -> Env:
    key = str(value).strip().lower()
    try:
        return Env(key)
    except ValueError:
        choices = ", ".join(e.value for e in Env)
        raise ConfigError(f"unknown env {value!r}: choose one of {choices}") from None


def parse_overrides(value: object) -> Tree:
    """`-c overrides=` arrives as a JSON string from the CLI (or a dict from cdk.json);
    `@path/to/file.json` reads the JSON from that file instead."""
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    text = str(value)
    source = "overrides"
    if text.startswith("@"):
        path = Path(text[1:])
        source = f"overrides file {path}"
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"{source} cannot be read: {exc.strerror}") from None
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source} is not valid JSON: {exc.msg} at char {exc.pos}") from None
    if not isinstance(parsed, dict):
        raise ConfigError(
            'overrides must be a JSON object, e.g. \'{"queues": {"mode": "per_type"}}\''
        )
    return parsed


EXAMPLES = Path(__file__).resolve().parent.parent / "config"


def example_overrides(env: Env) -> Tree:
    """The documented example overrides of an environment (`config/<env>.example.json`): what
    `make synth` and the tests add so that prod, which needs a certificate and an alarm
    address of its own, synthesizes without a real account."""
    path = EXAMPLES / f"{env.value}.example.json"
    return parse_overrides(f"@{path}") if path.exists() else {}


def deep_merge(base: Tree, top: Mapping[str, Any]) -> Tree:
    """Merge `top` over `base`: mappings merge key by key, anything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_transition(value: object) -> Tree | None:
    """`-c transition=<from phase>:<step>[:<traffic percent>]`, e.g. `1:cutover:25`."""
    if value is None or value == "":
        return None
    parts = str(value).strip().split(":")
    if len(parts) not in (2, 3):
        raise ConfigError(
            f"transition {value!r}: write <from phase>:<step>[:<traffic percent>], e.g. 1:expand"
        )
    spec: Tree = {"from_phase": parse_phase(parts[0]), "step": parts[1]}
    if len(parts) == 3:
        spec["traffic_percent"] = parts[2]
    return spec


def load_config(
    phase: object = "1",
    env: object = "staging",
    overrides: object = None,
    transition: object = None,
) -> PhaseConfig:
    """Phase defaults, then the environment overlay, then the user's overrides; validated once.

    With a `transition` (or `transition` in the overrides), the environment is between two
    computes: the config also carries the compute section and queue layout of the phase being
    left, and the data tier of the larger of the two phases (both computes use it, and shrinking
    waits until the old compute is gone).
    """
    ph = parse_phase(phase)
    en = parse_env(env)
    user = parse_overrides(overrides)
    for fixed in ("phase", "env"):
        if fixed in user:
            raise ConfigError(f"overrides cannot set {fixed!r}: use -c {fixed}=... instead")
    spec = parse_transition(transition)
    if spec is not None:
        user = deep_merge(user, {"transition": spec})
    tree = deep_merge(deep_merge(PHASES[ph], OVERLAYS[ph][en]), user)
    tree.update(phase=ph, env=en)
    if isinstance(tree.get("transition"), Mapping):
        tree = _with_previous_phase(tree, ph, en, user)
    try:
        return PhaseConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None


def _with_previous_phase(tree: Tree, phase: Phase, env: Env, user: Tree) -> Tree:
    """Fill a transition's config from the phase being left (validated on its own first)."""
    try:
        source = parse_phase(tree["transition"].get("from_phase"))
    except ConfigError as exc:
        raise ConfigError(f"invalid config: transition.from_phase: {exc}") from None
    own = {k: v for k, v in user.items() if k != "transition"}
    try:
        previous = load_config(source, env, own)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (in phase {int(source)}, the phase being left)") from None
    done = previous.model_dump(mode="python")
    tree = copy.deepcopy(tree)
    tree["transition"] = {
        **tree["transition"],
        "from_queue_mode": previous.queues.mode,
        "from_ai": done["ai"],
    }
    # The old compute as it runs now (the user's overrides of it were applied to `previous`).
    tree[previous.compute] = done[previous.compute]
    if source > phase:
        for section in ("network", "database", "cache"):
            tree[section] = done[section]
    return tree


def describe(exc: ValidationError, model: type[BaseModel] = PhaseConfig) -> str:
    """One line per config mistake: `field.path: what is wrong (valid: ...)`, first one first."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown field (valid: {', '.join(_fields_at(err['loc'][:-1], model))})"
        elif err["type"] == "missing":
            msg = "required field is missing"
        # Whole-config checks name their fields themselves.
        parts.append(f"{loc}: {msg}" if loc else msg)
    more = f" (and {len(parts) - 1} more)" if len(parts) > 1 else ""
    return f"invalid config: {parts[0]}{more}"


def _fields_at(loc: tuple[int | str, ...], model: type[BaseModel]) -> list[str]:
    """The field names valid at a location of a config tree (PhaseConfig's by default)."""
    for part in loc:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[str(part)].annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            return []
        model = nested[0]
    return sorted(model.model_fields)
