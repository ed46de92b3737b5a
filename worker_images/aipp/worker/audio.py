"""Audio conversion for local engines: any PCM WAV → 16 kHz mono 16-bit PCM, standard library only.

Other formats are converted with ffmpeg when it is installed; without it they fail with a clear
`unsupported_audio` error instead of a crash. A file that claims to be WAV but cannot be read is
`corrupt_audio` (retried, since a truncated read looks the same; a really corrupt file ends in the
DLQ with that reason).
"""

from __future__ import annotations

import array
import io
import shutil
import subprocess
import sys
import wave

from aipp.worker.errors import JobError
from aipp_contract.upload import SNIFF_BYTES, sniff_audio

TARGET_RATE = 16000


def unsupported(message: str) -> JobError:
    return JobError("unsupported_audio", message, retryable=False)


def _samples(raw: bytes, width: int) -> array.array[int]:
    """Little-endian PCM frames of `width` bytes as signed 16-bit values."""
    if width == 2:
        samples = array.array("h", raw[: len(raw) - len(raw) % 2])
        if sys.byteorder == "big":  # pragma: no cover - WAV is little-endian
            samples.byteswap()
        return samples
    if width == 1:  # 8-bit WAV is unsigned
        return array.array("h", ((b - 128) << 8 for b in raw))
    if width in (3, 4):
        shift = 8 * (width - 2)
        count = len(raw) // width
        return array.array(
            "h",
            (
                int.from_bytes(raw[i * width : (i + 1) * width], "little", signed=True) >> shift
                for i in range(count)
            ),
        )
    raise unsupported(f"{8 * width}-bit WAV is not supported")


def _mono(samples: array.array[int], channels: int) -> array.array[int]:
    if channels == 1:
        return samples
    frames = len(samples) // channels
    return array.array(
        "h",
        (sum(samples[i * channels : (i + 1) * channels]) // channels for i in range(frames)),
    )


def _resample(samples: array.array[int], rate: int) -> array.array[int]:
    """Linear interpolation; when downsampling, a moving average first as the low-pass."""
    if rate == TARGET_RATE or not samples:
        return samples
    ratio = rate / TARGET_RATE
    if ratio > 1.5:
        width = int(ratio)
        acc = 0
        smoothed = array.array("h", bytes(2 * len(samples)))
        for i, value in enumerate(samples):
            acc += value
            if i >= width:
                acc -= samples[i - width]
            smoothed[i] = acc // min(i + 1, width)
        samples = smoothed
    count = int(len(samples) / ratio)
    last = len(samples) - 1
    out = array.array("h", bytes(2 * count))
    for i in range(count):
        x = i * ratio
        j = int(x)
        a = samples[j]
        b = samples[j + 1] if j < last else a
        out[i] = int(a + (b - a) * (x - j))
    return out


def wav_to_pcm16k(data: bytes) -> bytes:
    """16 kHz mono signed 16-bit little-endian samples of a PCM WAV file."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            raw = wav.readframes(wav.getnframes())
    except wave.Error as exc:
        if "unknown format" in str(exc):
            raise unsupported(f"only PCM WAV can be decoded here ({exc})") from None
        raise JobError(
            "corrupt_audio", f"the WAV file cannot be read: {exc}", retryable=True
        ) from None
    except (EOFError, ValueError, OSError) as exc:
        raise JobError(
            "corrupt_audio",
            f"the WAV file cannot be read: {exc or type(exc).__name__}",
            retryable=True,
        ) from None
    if channels < 1 or rate < 1000:
        raise JobError("corrupt_audio", "the WAV header is not plausible", retryable=True)
    samples = _resample(_mono(_samples(raw, width), channels), rate)
    return samples.tobytes()


def _ffmpeg_to_pcm16k(data: bytes, ffmpeg: str) -> bytes:
    proc = subprocess.run(  # noqa: S603 - fixed argument list, input on stdin
        [
            ffmpeg,
            "-nostdin",
            "-loglevel",
            "error",
            "-i",
            "pipe:0",
            "-f",
            "s16le",
            "-ac",
            "1",
            "-ar",
            str(TARGET_RATE),
            "pipe:1",
        ],
        input=data,
        capture_output=True,
        check=False,
        timeout=3600,
    )
    if proc.returncode != 0:
        reason = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["failed"]
        raise JobError(
            "corrupt_audio", f"ffmpeg could not decode the file: {reason[0]}", retryable=True
        )
    return proc.stdout


def to_pcm16k(data: bytes) -> bytes:
    """Any audio this machine can decode → 16 kHz mono 16-bit PCM (runs in a worker thread)."""
    kind = sniff_audio(data[:SNIFF_BYTES])
    if kind == "audio/wav":
        return wav_to_pcm16k(data)
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise unsupported(
            f"{kind or 'this format'} needs ffmpeg, which is not installed; send PCM WAV"
        )
    return _ffmpeg_to_pcm16k(data, ffmpeg)
