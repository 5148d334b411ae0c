"""Atomic file replacement: readers only ever see the old file or the complete new one."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; on success it is fsynced and renamed over ``path``."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    yield temporary
    with temporary.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, path)
