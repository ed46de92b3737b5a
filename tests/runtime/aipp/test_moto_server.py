"""The local moto server's fixes (`aipp.dev.moto_server`); every runtime test talks to it."""

from __future__ import annotations

from collections.abc import Iterator

import moto.backends
from aipp.dev.moto_server import _read_once


def test_moto_lists_its_modules_once_and_answers_with_that_list() -> None:
    reads = []

    def listing() -> Iterator[str]:
        reads.append(1)
        yield from ("s3", "sqs")

    modules = _read_once(listing)
    assert [list(modules()), list(modules())] == [["s3", "sqs"], ["s3", "sqs"]]
    assert len(reads) == 1
    # The real list, read once, is the list moto's own function reads.
    assert list(_read_once(moto.backends.list_of_moto_modules)()) == list(
        moto.backends.list_of_moto_modules()
    )
