"""Synthesize checkouts' own CDK apps for several phase x environment pairs, in one process.

`python tools/synth_tree.py --pairs 1:staging,1:prod --tree <label> <checkout> <out root> ...`
writes one cloud assembly per pair and checkout to `<out root>/phase<N>-<env>/`, running the
checkout's own app (the `.py` file its cdk.json `app` names) with its own code, as
`cdk synth -c phase=<N> -c env=<env>` would: the checkout's cdk.json context, then `phase` and
`env`, then its `config/<env>.example.json` as `overrides` where that file exists (what
`make synth` applies). One jsii runtime serves every pair and checkout, so each costs seconds,
not a process start; between checkouts every module imported from the one before is forgotten.

The CDK CLI hands an app its context and output directory through environment variables that
the jsii runtime reads once, at start; so instead `aws_cdk.App` is swapped for a subclass that
fills in both. Progress goes to stderr, one line per pair; an app that exits non-zero stops the
run with exit status 2.

Only the standard library is imported here before a checkout's app runs: each checkout must
see its own modules, not this repository's.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import shlex
import sys
import time
from pathlib import Path
from typing import Any


def app_script(checkout: Path) -> Path:
    """The Python file cdk.json's `app` command runs, e.g. `.venv/bin/python app.py`."""
    command = json.loads((checkout / "cdk.json").read_text()).get("app", "")
    scripts = [part for part in shlex.split(command) if part.endswith(".py")]
    if not scripts:
        raise SystemExit(f"error: {checkout}/cdk.json: `app` runs no .py file ({command!r})")
    return checkout / scripts[-1]


def context_for(checkout: Path, phase: str, env: str) -> dict[str, Any]:
    """What `cdk synth -c phase=.. -c env=..` would give the app, plus the example overrides."""
    context: dict[str, Any] = dict(
        json.loads((checkout / "cdk.json").read_text()).get("context", {})
    )
    saved = checkout / "cdk.context.json"
    if saved.exists():
        context.update(json.loads(saved.read_text()))
    context.update(phase=phase, env=env)
    example = checkout / "config" / f"{env}.example.json"
    if example.exists():
        context["overrides"] = f"@{example}"
    return context


def purge(checkout: Path) -> None:
    """Forget every module imported from `checkout`, so the next checkout imports its own
    (not the installed packages, which may live in a virtualenv inside it)."""
    installed = Path(sys.prefix).resolve()
    for name, module in list(sys.modules.items()):
        where = getattr(module, "__file__", None)
        if not where:
            continue
        path = Path(where).resolve()
        if path.is_relative_to(checkout) and not path.is_relative_to(installed):
            del sys.modules[name]


def synthesize(label: str, checkout: Path, out_root: Path, pairs: list[str]) -> bool:
    """Every pair of one checkout into `out_root`; False when its app failed."""
    import aws_cdk  # noqa: PLC0415 - only once the checkout is first on sys.path

    settings: dict[str, Any] = {}

    class App(aws_cdk.App):
        """`cdk.App()` as the CLI would start it for the current pair."""

        def __init__(self, **kwargs: Any) -> None:
            kwargs.setdefault("outdir", settings["outdir"])
            kwargs.setdefault("context", settings["context"])
            super().__init__(**kwargs)

    script = app_script(checkout)
    real_app, cwd = aws_cdk.App, Path.cwd()
    os.chdir(checkout)
    sys.path.insert(0, str(checkout))
    aws_cdk.App = App  # type: ignore[misc]
    try:
        for i, pair in enumerate(pairs, start=1):
            phase, env = pair.split(":", 1)
            started = time.perf_counter()
            settings["outdir"] = str(out_root / f"phase{phase}-{env}")
            settings["context"] = context_for(checkout, phase, env)
            sys.argv = [str(script)]
            try:
                runpy.run_path(str(script), run_name="__main__")
                status: object = 0
            except SystemExit as exc:
                status = exc.code or 0
            if status != 0:
                print(
                    f"  {label}: phase {phase} / {env}: the app exited with {status}",
                    file=sys.stderr,
                    flush=True,
                )
                return False
            seconds = time.perf_counter() - started
            print(
                f"  {label}: [{i}/{len(pairs)}] phase {phase} / {env} synthesized in "
                f"{seconds:.1f} s",
                file=sys.stderr,
                flush=True,
            )
    finally:
        aws_cdk.App = real_app  # type: ignore[misc]
        sys.path.remove(str(checkout))
        os.chdir(cwd)
        purge(checkout)
    return True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", required=True, help="<phase>:<env>[,<phase>:<env>...]")
    parser.add_argument(
        "--tree",
        nargs=3,
        action="append",
        required=True,
        metavar=("LABEL", "CHECKOUT", "OUT"),
        help="a checkout to synthesize into OUT (repeatable; one after the other)",
    )
    args = parser.parse_args(argv)
    pairs = args.pairs.split(",")
    del sys.path[0]  # this script's folder: only the checkouts' own modules are importable
    sys.dont_write_bytecode = True  # leave the checkouts as they were
    for label, checkout, out in args.tree:
        if not synthesize(label, Path(checkout).resolve(), Path(out).resolve(), pairs):
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
