"""Crafted checkpoints for the refusal tests: files whose unpickling would run a command that creates a marker file."""

from __future__ import annotations

import builtins
import os
import pickle
from pathlib import Path
from typing import Callable

import torch


class Payload:
    """What a crafted checkpoint holds: unpickling it calls ``call(argument)``."""

    def __init__(self, call: Callable[[str], object], argument: str) -> None:
        self.call, self.argument = call, argument

    def __reduce__(self) -> tuple[Callable[[str], object], tuple[str]]:
        return self.call, (self.argument,)


def write_payload(path: Path, marker: Path, via: str = "torch.save", call: str = "os.system") -> Path:
    """A weights-like file at ``path`` whose unpickling creates ``marker`` (by ``os.system`` or ``exec``)."""
    payload = (Payload(os.system, f"touch {marker}") if call == "os.system"
               else Payload(builtins.exec, f"open({str(marker)!r}, 'w').close()"))
    state = {"epoch": payload, "model": {"weight": torch.zeros(2)}}  # the payload is the first thing unpickled
    path.parent.mkdir(parents=True, exist_ok=True)
    if via == "torch.save":
        torch.save(state, path)
    else:  # plain pickle: protocol 2 (torch's own) and the default
        with path.open("wb") as handle:
            pickle.dump(state, handle, protocol=2 if via == "pickle-2" else None)
    return path
