"""The order `make test` hands out the test modules in (tests/conftest.py)."""

from __future__ import annotations

from tests.conftest import longest_first


def test_untimed_modules_come_first_then_the_longest_each_in_its_own_order() -> None:
    nodeids = [
        "a.py::one",
        "b.py::one",
        "a.py::two",
        "new_small.py::one",
        "new_big.py::one",
        "new_big.py::two",
        "b.py::two",
    ]
    seconds = {"a.py": 10.0, "b.py": 50.0, "gone.py": 99.0}
    assert longest_first(nodeids, seconds) == [
        "new_big.py::one",
        "new_big.py::two",
        "new_small.py::one",
        "b.py::one",
        "b.py::two",
        "a.py::one",
        "a.py::two",
    ]


def test_without_times_the_modules_with_most_tests_come_first() -> None:
    nodeids = ["x.py::one", "y.py::one", "y.py::two"]
    assert longest_first(nodeids, {}) == ["y.py::one", "y.py::two", "x.py::one"]
