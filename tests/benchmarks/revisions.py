"""Modules of another revision of atomdesc, loaded beside the installed one for side-by-side timing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def source(old: str, path: str) -> str:
    """The text of ``path`` (relative to the repository root) in ``old``: a folder or a git revision."""
    if Path(old).is_dir():
        return (Path(old) / path).read_text()
    return subprocess.check_output(["git", "-C", str(ROOT), "show", f"{old}:{path}"], text=True)


def load(old: str, path: str, name: str, swaps: dict[str, ModuleType]) -> ModuleType:
    """Execute ``path`` of ``old`` as module ``name`` of the atomdesc package, with ``swaps``
    (module name -> module) standing in for its imports while it loads."""
    saved = {key: sys.modules.get(key) for key in swaps}
    sys.modules.update(swaps)
    try:
        module = ModuleType(name)
        module.__package__ = "atomdesc"
        sys.modules[name] = module
        exec(compile(source(old, path), f"{old}:{path}", "exec"), module.__dict__)
    finally:
        for key, value in saved.items():
            if value is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = value
    return module
