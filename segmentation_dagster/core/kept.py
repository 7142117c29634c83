"""Models kept between runs: a joblib file in the model folder, written via a temp file and a
rename (a reader never sees half a model), and read back only when it is what the caller
expects; anything else (missing, a link, unreadable, another type) means: fit again."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def save(path: Path, obj: object) -> None:
    """Keep ``obj`` at ``path``."""
    import joblib

    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)  # a killed save's (they hold fitted data too)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        joblib.dump(obj, tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_leftovers(path: Path) -> list[Path]:
    """Delete the temp files killed saves of ``path`` left beside it (no link followed)."""
    gone = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp") if path.parent.is_dir() else []:
        tmp.unlink(missing_ok=True)  # unlink removes a link itself, never its target
        gone.append(tmp)
    return gone


def load(path: Path, kind: type[T]) -> tuple[T | None, str]:
    """The ``kind`` kept at ``path`` (a file this project wrote), or None and why not ("" when
    nothing is kept)."""
    import joblib

    if not path.is_file() or path.is_symlink():
        return None, ""
    try:
        found = joblib.load(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file means: fit again
        return None, f"kept models unreadable ({type(exc).__name__}: {exc})"
    if not isinstance(found, kind):
        return None, f"{path.name} holds no {kind.__name__}"
    return found, ""


@dataclass(frozen=True)
class Stamp:
    """What kept models were fitted with: their configuration section's training settings,
    scikit-learn's version, and the last event date of the history they learnt from."""

    settings: tuple[object, ...]
    sklearn: str
    through: dt.date

    @classmethod
    def now(cls, settings: tuple[object, ...], through: dt.date) -> Stamp:
        import sklearn

        return cls(settings, sklearn.__version__, through)

    def stale(
        self, settings: tuple[object, ...], last: dt.date, every: int, section: str, field: str
    ) -> str | None:
        """Why models with this stamp may not serve a history ending on ``last`` under
        ``settings``, when they are refitted ``every`` days of events (``section.field``);
        None: they may."""
        import sklearn

        if self.settings != settings:
            return f"the {section} section changed since they were fitted"
        if self.sklearn != sklearn.__version__:
            return f"fitted with scikit-learn {self.sklearn}, now {sklearn.__version__}"
        age = (last - self.through).days
        if age < 0:
            return f"the history now ends on {last}, before their last day {self.through}"
        if age >= every:
            return f"they are {age} days old ({section}.{field} {every})"
        return None
