"""The content types a client may declare, and what counts as a safe filename. What counts as
audio (its bytes) is an upload rule of `aipp_contract.upload`."""

from __future__ import annotations

import unicodedata

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
