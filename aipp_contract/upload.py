"""The upload rules: what counts as audio (its bytes, never the client's word) and why an upload
is refused. The API applies them to a multipart upload, the upload check (the Lambda, and the
workers' expiry sweep) to an object in the bucket; both answer with these codes."""

from __future__ import annotations

from dataclasses import dataclass

# How many leading bytes `sniff_audio` needs: one ranged GET, or one read of a spooled file.
SNIFF_BYTES = 64

# The audio types accepted unless AIPP_ALLOWED_CONTENT_TYPES says otherwise.
DEFAULT_ALLOWED_CONTENT_TYPES = (
    "audio/mpeg",
    "audio/wav",
    "audio/flac",
    "audio/ogg",
    "audio/mp4",
    "audio/webm",
)

EMPTY_FILE = "empty_file"
FILE_TOO_LARGE = "file_too_large"
SIZE_MISMATCH = "size_mismatch"
NOT_AUDIO = "not_audio"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an upload is refused: a stable code and a message the client can read."""

    code: str
    message: str


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


def inspect_upload(
    size: int, head: bytes, *, limit: int, declared_size: int | None = None
) -> str | Rejection:
    """The audio type of an upload of `size` bytes starting with `head` (at least SNIFF_BYTES
    of it), or why it is refused: empty, over `limit`, not the size the client declared, not
    audio. Whether the type is one the deployment accepts is the caller's next question."""
    if size == 0:
        return Rejection(EMPTY_FILE, "the uploaded file is empty")
    if size > limit:
        return Rejection(FILE_TOO_LARGE, f"the file exceeds the limit of {limit} bytes")
    if declared_size is not None and size != declared_size:
        return Rejection(
            SIZE_MISMATCH, f"uploaded {size} bytes, but the task declared {declared_size}"
        )
    sniffed = sniff_audio(head[:SNIFF_BYTES])
    if sniffed is None:
        return Rejection(NOT_AUDIO, "the uploaded file is not audio of a recognised format")
    return sniffed
