"""Points where a test can stop a process to kill it there.

A test sets ``SEGMENTATION_PAUSE_AT=<point>:<marker file>``; the process that reaches
:func:`pause_point` ``(<point>)`` writes its pid into the marker file and sleeps until it is
killed, so the test can ``kill -9`` it at exactly that point (inside an open transaction, say)
instead of after a guessed delay. Without the variable, which nothing but tests sets, a pause
point does nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PAUSE_ENV = "SEGMENTATION_PAUSE_AT"
MAX_PAUSE_S = 600.0


def pause_point(name: str) -> None:
    """Sleep here if a test asked to pause at ``name`` (see the module docstring)."""
    spec = os.environ.get(PAUSE_ENV)
    if not spec:
        return
    point, _, marker = spec.partition(":")
    if point != name:
        return
    path = Path(marker)
    if path.is_symlink() or path.exists():  # a new file of the test's own, never a link
        raise RuntimeError(f"{PAUSE_ENV}: the marker file {marker} must not exist yet")
    with path.open("x") as out:
        out.write(str(os.getpid()))
    deadline = time.monotonic() + MAX_PAUSE_S
    while time.monotonic() < deadline:
        time.sleep(0.5)
    raise RuntimeError(f"paused at {name} for {MAX_PAUSE_S:.0f}s and nobody killed the process")
