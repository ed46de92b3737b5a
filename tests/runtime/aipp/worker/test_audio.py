"""WAV in any PCM shape becomes 16 kHz mono 16-bit; other formats fail clearly without ffmpeg."""

from __future__ import annotations

import array
import io
import math
import wave

import pytest
from aipp.worker import audio
from aipp.worker.audio import to_pcm16k, wav_to_pcm16k
from aipp.worker.errors import JobError


def tone_wav(rate: int, channels: int, width: int, seconds: float = 0.5) -> bytes:
    frames = int(rate * seconds)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        raw = bytearray()
        for i in range(frames):
            value = math.sin(2 * math.pi * 440 * i / rate) * 0.5
            for _ in range(channels):
                if width == 1:
                    raw += bytes([int(value * 127) + 128])
                else:
                    raw += int(value * (2 ** (8 * width - 1) - 1)).to_bytes(
                        width, "little", signed=True
                    )
        w.writeframes(bytes(raw))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("rate", "channels", "width"),
    [(16000, 1, 2), (44100, 2, 2), (22050, 1, 1), (48000, 2, 3), (8000, 1, 4)],
)
def test_pcm_wav_of_any_shape_becomes_half_a_second_of_16khz_mono(
    rate: int, channels: int, width: int
) -> None:
    pcm = wav_to_pcm16k(tone_wav(rate, channels, width))
    samples = array.array("h", pcm)
    assert abs(len(samples) - 8000) <= 2
    peak = max(abs(s) for s in samples)
    assert 0.35 * 32767 < peak < 0.55 * 32767  # the tone survives at its level


def test_other_formats_need_ffmpeg_and_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audio.shutil, "which", lambda name: None)
    with pytest.raises(JobError) as failure:
        to_pcm16k(b"ID3\x04\x00" + bytes(100))
    assert failure.value.code == "unsupported_audio" and not failure.value.retryable
    assert "ffmpeg" in failure.value.message


def test_float_wav_is_unsupported_and_a_broken_one_is_corrupt() -> None:
    float_wav = bytearray(tone_wav(16000, 1, 2))
    float_wav[20:22] = (3).to_bytes(2, "little")  # WAVE_FORMAT_IEEE_FLOAT
    with pytest.raises(JobError) as unsupported:
        wav_to_pcm16k(bytes(float_wav))
    assert unsupported.value.code == "unsupported_audio"
    header_only = b"RIFF" + (2040).to_bytes(4, "little") + b"WAVEfmt " + bytes(2036)
    with pytest.raises(JobError) as corrupt:
        to_pcm16k(header_only)
    assert corrupt.value.code == "corrupt_audio" and corrupt.value.retryable
