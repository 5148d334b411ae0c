"""Word-level tokenisation and the caption vocabulary."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS: tuple[str, ...] = (PAD, START, END, UNK)
_TOKEN = re.compile(r"[a-z0-9]+|[.,;:]")


def tokenize(text: str) -> list[str]:
    """Lower-case words, numbers and sentence punctuation (``.,;:``); everything else is a separator."""
    return _TOKEN.findall(text.lower())


def detokenize(words: Sequence[str]) -> str:
    """Join tokens with single spaces (the captions' own spacing, so metrics see the same tokens)."""
    return " ".join(words)


@dataclass(frozen=True)
class Vocabulary:
    """Index <-> word maps; indices 0..3 are ``<pad> <start> <end> <unk>``."""

    words: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.words[: len(SPECIALS)] != SPECIALS:
            raise ValueError(f"a vocabulary must start with {SPECIALS}")
        object.__setattr__(self, "_index", {w: i for i, w in enumerate(self.words)})

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1) -> "Vocabulary":
        """Every token seen at least ``min_count`` times, most frequent first (ties alphabetical)."""
        counts = Counter(t for c in captions for t in tokenize(c))
        kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        return cls(SPECIALS + tuple(kept))

    def __len__(self) -> int:
        return len(self.words)

    @property
    def pad(self) -> int:
        return 0

    @property
    def start(self) -> int:
        return 1

    @property
    def end(self) -> int:
        return 2

    @property
    def unk(self) -> int:
        return 3

    def index(self, word: str) -> int:
        return self._index.get(word, self.unk)  # type: ignore[attr-defined]

    def encode(self, caption: str, max_len: int | None = None) -> list[int]:
        """``<start> w1 .. wn <end>``; with ``max_len``, words are cut so the whole fits in ``max_len``."""
        ids = [self.index(t) for t in tokenize(caption)]
        if max_len is not None:
            ids = ids[: max_len - 2]
        return [self.start, *ids, self.end]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Words up to the first ``<end>``, without special tokens."""
        out = []
        for i in ids:
            if i == self.end:
                break
            if i >= len(SPECIALS):
                out.append(self.words[i])
        return out

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(list(self.words)))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Vocabulary":
        return cls(tuple(json.loads(Path(path).read_text())))
