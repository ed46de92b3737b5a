"""The order in which pytest-xdist hands out the test modules: longest first.

`make test` runs with `--dist loadscope`: each module's tests stay in one process, which takes
the next module in the queue when it is done. A long module taken last makes the whole run wait
for it (the 500-task load test alone takes half a minute), so the queue holds the modules by how
long they took when they last ran, longest first, kept in pytest's cache (`.pytest_cache`).
Modules without a time yet (a fresh clone, a new module) come first, by their number of tests,
most first (pytest-xdist's own order). Within a module the order is unchanged. The Makefile
passes `--no-loadscope-reorder` so that pytest-xdist keeps this order.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

CACHE_KEY = "aipp/module-seconds"


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def _is_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")


def longest_first(nodeids: list[str], seconds: dict[str, float]) -> list[str]:
    """`nodeids` in the order to hand out their modules: modules without a time first, most
    tests first; then by `seconds`, longest first; each module's own order kept."""
    tests = Counter(_module(nodeid) for nodeid in nodeids)

    def rank(nodeid: str) -> tuple[bool, float]:
        module = _module(nodeid)
        timed = module in seconds
        return timed, -(seconds[module] if timed else tests[module])

    return sorted(nodeids, key=rank)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cache = getattr(config, "cache", None)
    seconds: dict[str, float] = cache.get(CACHE_KEY, {}) if cache is not None else {}
    position = {
        nodeid: i for i, nodeid in enumerate(longest_first([i.nodeid for i in items], seconds))
    }
    items.sort(key=lambda item: position[item.nodeid])


class _Timings:
    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seconds[_module(report.nodeid)] += report.duration


def pytest_configure(config: pytest.Config) -> None:
    if _is_controller(config):
        config.pluginmanager.register(_Timings(), "aipp-module-timings")


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    timings = config.pluginmanager.get_plugin("aipp-module-timings")
    cache = getattr(config, "cache", None)
    if not isinstance(timings, _Timings) or cache is None or not timings.seconds:
        return
    known: dict[str, float] = cache.get(CACHE_KEY, {})
    known.update({module: round(s, 2) for module, s in timings.seconds.items()})
    cache.set(CACHE_KEY, known)
