"""Long transcripts: summarize chunks, then merge the chunk summaries (map-reduce).

The prompts live in a versioned file (`prompts/summary-v1.json`); the version is recorded with
each result, so a changed prompt is a new file and a new version, never an edit in place.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PROMPTS = Path(__file__).resolve().parent.parent / "prompts"
PROMPT_VERSION = "summary-v1"
MAX_MERGE_ROUNDS = 4

Complete = Callable[[str, str], Awaitable[str]]  # (system, user) -> model text


@dataclass(frozen=True)
class Prompts:
    version: str
    system: str
    chunk: str
    single: str
    merge: str


@cache
def load_prompts(version: str = PROMPT_VERSION) -> Prompts:
    data = json.loads((PROMPTS / f"{version}.json").read_text(encoding="utf-8"))
    return Prompts(
        version=data["version"],
        system=data["system"],
        chunk=data["chunk"],
        single=data["single"],
        merge=data["merge"],
    )


def chunk_text(text: str, max_chars: int) -> list[str]:
    """Pieces of at most `max_chars`, cut at sentence ends, else at spaces, else anywhere."""
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return [text] if text else []
    pieces = re.split(r"(?<=[.!?])\s+", text)
    words: list[str] = []
    for piece in pieces:
        if len(piece) <= max_chars:
            words.append(piece)
        else:
            for word in piece.split(" "):
                words.extend(word[i : i + max_chars] for i in range(0, len(word), max_chars))
    chunks: list[str] = []
    current = ""
    for part in words:
        candidate = f"{current} {part}" if current else part
        if len(candidate) > max_chars and current:
            chunks.append(current)
            current = part
        else:
            current = candidate
    if current:
        chunks.append(current)
    return chunks


async def summarize_chunked(
    complete: Complete, transcript: str, *, max_chars: int, prompts: Prompts | None = None
) -> tuple[str, int]:
    """The summary and the number of model calls it took."""
    p = prompts or load_prompts()
    chunks = chunk_text(transcript, max_chars)
    if not chunks:
        return "", 0
    if len(chunks) == 1:
        return (await complete(p.system, p.single.format(text=chunks[0]))).strip(), 1
    calls = 0
    summaries = []
    for index, chunk in enumerate(chunks, 1):
        user = p.chunk.format(index=index, count=len(chunks), text=chunk)
        summaries.append((await complete(p.system, user)).strip())
        calls += 1
    for _ in range(MAX_MERGE_ROUNDS):
        groups = chunk_text("\n\n".join(summaries), max_chars)
        if len(groups) <= 1:
            break
        summaries = []
        for group in groups:
            summaries.append((await complete(p.system, p.merge.format(text=group))).strip())
            calls += 1
    merged = await complete(p.system, p.merge.format(text="\n\n".join(summaries)[: max_chars * 2]))
    return merged.strip(), calls + 1
