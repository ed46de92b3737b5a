"""Audio is recognised by its bytes; filenames are safe as the last part of an S3 key."""

from __future__ import annotations

import pytest
from aipp.core.audio import filename_problem, normalize_content_type, sniff_audio


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "audio/wav"),
        (b"fLaC\x00\x00\x00\x22", "audio/flac"),
        (b"OggS\x00\x02", "audio/ogg"),
        (b"ID3\x04\x00\x00", "audio/mpeg"),
        (b"\xff\xfb\x90\x64", "audio/mpeg"),
        (b"\x00\x00\x00\x20ftypM4A \x00\x00", "audio/mp4"),
        (b"\x1a\x45\xdf\xa3\x9f\x42", "audio/webm"),
        (b"%PDF-1.7", None),
        (b"\x89PNG\r\n\x1a\n", None),
        (b"RIFF\x24\x00\x00\x00AVI LIST", None),
        (b"hello world", None),
        (b"", None),
    ],
)
def test_sniffing(head: bytes, expected: str | None) -> None:
    assert sniff_audio(head) == expected


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
