"""What counts as audio (magic bytes, never the client's word) and as a safe filename."""

from __future__ import annotations

import unicodedata

SNIFF_BYTES = 64

_ALIASES = {
    "audio/mp3": "audio/mpeg",
    "audio/x-mp3": "audio/mpeg",
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "audio/x-flac": "audio/flac",
    "audio/x-m4a": "audio/mp4",
    "audio/m4a": "audio/mp4",
    "audio/aac": "audio/mp4",
}


def accepted_content_types(allowed: tuple[str, ...]) -> tuple[str, ...]:
    """The `content_type` values a client may declare: the allowed types and their aliases."""
    aliases = tuple(alias for alias, canonical in _ALIASES.items() if canonical in allowed)
    return (*allowed, *aliases)


def normalize_content_type(value: str) -> str:
    base = value.split(";", 1)[0].strip().lower()
    return _ALIASES.get(base, base)


def sniff_audio(head: bytes) -> str | None:  # noqa: PLR0911 - one exit per format
    """The audio MIME type that the first bytes of a file announce, or None if not audio."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[:4] == b"fLaC":
        return "audio/flac"
    if head[:4] == b"OggS":
        return "audio/ogg"
    if head[:3] == b"ID3":
        return "audio/mpeg"
    if len(head) >= 3 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0:
        version, layer, bitrate = (head[1] >> 3) & 0x3, (head[1] >> 1) & 0x3, head[2] >> 4
        if version != 1 and layer != 0 and bitrate not in (0, 15):
            return "audio/mpeg"
    if head[4:8] == b"ftyp" and head[8:12] in {b"M4A ", b"M4B ", b"mp42", b"isom", b"dash"}:
        return "audio/mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "audio/webm"
    return None


def filename_problem(name: str) -> str | None:  # noqa: PLR0911 - one exit per rule
    """Why `name` is not acceptable as the last part of an S3 key, or None when it is."""
    if not name or not name.strip():
        return "filename must not be empty"
    if len(name.encode()) > 255:
        return "filename must be at most 255 bytes"
    if "/" in name or "\\" in name:
        return "filename must not contain path separators"
    if name in {".", ".."}:
        return "filename must not be '.' or '..'"
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        return "filename must not contain control or unassigned characters"
    if name != name.strip():
        return "filename must not start or end with whitespace"
    return None
