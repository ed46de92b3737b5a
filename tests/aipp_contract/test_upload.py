"""The upload rules the API and the upload check share: audio is recognised by its bytes, and
an upload is refused with the same code whichever side looks at it."""

from __future__ import annotations

import pytest

from aipp_contract.upload import (
    EMPTY_FILE,
    FILE_TOO_LARGE,
    NOT_AUDIO,
    SIZE_MISMATCH,
    SNIFF_BYTES,
    Rejection,
    inspect_upload,
    sniff_audio,
)

WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(SNIFF_BYTES)


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
    ("size", "head", "declared", "expected"),
    [
        (0, b"", None, EMPTY_FILE),
        (101, WAV, None, FILE_TOO_LARGE),
        (100, WAV, 99, SIZE_MISMATCH),
        (100, b"%PDF-1.7" + bytes(60), None, NOT_AUDIO),
        (100, WAV, 100, "audio/wav"),
        (100, WAV, None, "audio/wav"),
    ],
)
def test_an_upload_is_audio_or_refused_with_a_stable_code(
    size: int, head: bytes, declared: int | None, expected: str
) -> None:
    found = inspect_upload(size, head, limit=100, declared_size=declared)
    code = found.code if isinstance(found, Rejection) else found
    assert code == expected


def test_only_the_first_sniff_bytes_decide() -> None:
    """Bytes past SNIFF_BYTES are never looked at: a ranged GET of that many is enough."""
    late = bytes(SNIFF_BYTES) + WAV
    assert inspect_upload(len(late), late, limit=1000) == Rejection(
        NOT_AUDIO, "the uploaded file is not audio of a recognised format"
    )
