"""Filenames are safe as the last part of an S3 key; declared types are normalised."""

from __future__ import annotations

import pytest
from aipp.core.audio import filename_problem, normalize_content_type


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("meeting.mp3", True),
        ("réunion du lundi.wav", True),
        ("../etc/passwd", False),
        ("a/b.mp3", False),
        ("a\\b.mp3", False),
        ("bad\x00name.mp3", False),
        ("tab\tname.mp3", False),
        ("..", False),
        ("", False),
        (" padded.mp3", False),
        ("x" * 256, False),
    ],
)
def test_filenames(name: str, ok: bool) -> None:
    assert (filename_problem(name) is None) is ok


def test_content_type_aliases() -> None:
    assert normalize_content_type("Audio/X-WAV; codecs=1") == "audio/wav"
    assert normalize_content_type("audio/mp3") == "audio/mpeg"
