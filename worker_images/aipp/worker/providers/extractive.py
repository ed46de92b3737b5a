"""An offline, deterministic extractive summarizer: the most representative sentences, in order.

Speech engines often emit no punctuation, so text without sentence ends is cut into runs of
words first. Each sentence scores by the document frequency of its content words, normalised by
its length; the best few are kept in their original order.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from aipp.worker.providers.base import Summary

_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?", re.UNICODE)
WORDS_PER_PSEUDO_SENTENCE = 20
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had
    has have having he her here hers herself him himself his how i if in into is it its itself
    just me more most my myself no nor not now of off on once only or other our ours ourselves out
    over own same she should so some such than that the their theirs them themselves then there
    these they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours yourself yourselves uh um oh okay yeah
    """.split()  # noqa: SIM905 - a word list reads better as text
)


def sentences(text: str) -> list[str]:
    text = " ".join(text.split())
    if not text:
        return []
    parts = [p for p in _SENTENCE.split(text) if p]
    if len(parts) == 1 and len(text.split()) > WORDS_PER_PSEUDO_SENTENCE:
        words = text.split()
        parts = [
            " ".join(words[i : i + WORDS_PER_PSEUDO_SENTENCE])
            for i in range(0, len(words), WORDS_PER_PSEUDO_SENTENCE)
        ]
    return parts


def summarize_text(text: str, max_sentences: int = 5) -> str:
    parts = sentences(text)
    if len(parts) <= 2:
        return " ".join(parts)
    tokens = [[w.lower() for w in _WORD.findall(p)] for p in parts]
    freq = Counter(w for ws in tokens for w in set(ws) if w not in STOPWORDS)
    if not freq:
        return parts[0]
    keep = max(1, min(max_sentences, math.ceil(len(parts) * 0.3)))
    scores = []
    for index, words in enumerate(tokens):
        content = [w for w in words if w not in STOPWORDS]
        score = sum(freq[w] for w in content) / (len(words) ** 0.5 if words else 1)
        scores.append((-score, index))  # ties: the earlier sentence wins
    chosen = sorted(index for _, index in sorted(scores)[:keep])
    return " ".join(parts[i] for i in chosen)


class ExtractiveSummarizer:
    name = "extractive"

    async def summarize(self, transcript: str, language: str | None) -> Summary:
        return Summary(text=summarize_text(transcript), details={"method": "extractive-v1"})
