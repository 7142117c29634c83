"""What is in the landing folder, and what of it may be read.

Outside systems write the landing folder, so its entries are untrusted: every entry of
``<landing>/<kind>/`` is either a file to load or gets a reason why it is not read, which the
ingestion records in the manifest (``ignored: ...``) and the audit lists. Rules:

- Names starting with ``.`` are skipped without a word: that is the atomic delivery convention
  (write ``.name.tmp``, then rename it to ``name``), so a half-written file is never read.
- Loaded: regular files named ``*.parquet``, ``*.csv`` or ``*.csv.gz`` (any case).
- A symbolic link is followed only when its target lies inside the same ``<landing>/<kind>/``
  folder (e.g. a link to a versioned file in a sub-folder); a link pointing anywhere else, or
  nowhere, is ignored. A kind folder that is itself a link out of the landing folder is ignored.
- Ignored with a reason: directories, other extensions, anything that is not a regular file
  (a FIFO would block the reader), and paths with ``*``, ``?`` or ``[``, which DuckDB would
  expand as a pattern and so read other files than the one named.
- At the top of the landing folder only ``events/``, ``customers/`` and ``products/`` are read;
  any other entry, including a ``sources.yml`` (the mapping is project configuration, never read
  from here), is ignored with a reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

KINDS = ("events", "customers", "products")
SUFFIXES = (".parquet", ".csv", ".csv.gz")
GLOB_CHARS = "*?["


@dataclass(frozen=True)
class Entry:
    """One entry of a landing folder: its name, the file to read (links resolved) or the reason
    it is not read, and its size (0 if it has none)."""

    name: str
    real: Path | None
    reason: str | None
    size: int = 0


def suffix_of(name: str) -> str:
    """The extension that decides how a file is read (``.csv.gz`` counts as one)."""
    lower = name.lower()
    if lower.endswith(".gz") and "." in lower[:-3]:
        return lower[lower.rindex(".", 0, len(lower) - 3) :]
    return Path(lower).suffix


def is_csv(name: str) -> bool:
    return name.lower().endswith((".csv", ".csv.gz"))


def _size(p: Path) -> int:
    try:
        return p.lstat().st_size
    except OSError:
        return 0


def _link_reason(p: Path, folder: Path, landing: Path) -> tuple[Path | None, str | None]:
    target = p.resolve()
    if target.is_relative_to(folder):
        return (
            (target, None) if target.exists() else (None, f"ignored: broken symlink (-> {target})")
        )
    where = "the landing folder" if not target.is_relative_to(landing) else f"{folder.name}/"
    return None, f"ignored: symlink outside {where} (-> {target})"


def _classify(p: Path, folder: Path, landing: Path) -> Entry:
    real = p
    if p.is_symlink():
        target, reason = _link_reason(p, folder, landing)
        if reason:
            return Entry(p.name, None, reason, _size(p))
        real = target
    if real.is_dir():
        return Entry(p.name, None, "ignored: directory (sub-folders are not read)")
    if not real.is_file():
        return Entry(p.name, None, "ignored: not a regular file", _size(p))
    suffix = suffix_of(p.name)
    if suffix not in SUFFIXES:
        what = f"unsupported extension {suffix}" if suffix else "no file extension"
        return Entry(p.name, None, f"ignored: {what} (load .parquet, .csv or .csv.gz)", _size(real))
    if any(c in str(real) for c in GLOB_CHARS):
        return Entry(p.name, None, "ignored: path contains *, ? or [ (rename it)", _size(real))
    return Entry(p.name, real, None, real.stat().st_size)


def kind_folder(landing_dir: Path, kind: str) -> Path | None:
    """``<landing>/<kind>`` resolved, or None when it is missing or links out of the landing
    folder (:func:`root_entries` gives the reason)."""
    landing = landing_dir.resolve()
    folder = (landing_dir / kind).resolve()
    if not folder.is_dir() or not folder.is_relative_to(landing) or folder == landing:
        return None
    return folder


def kind_entries(landing_dir: Path, kind: str) -> list[Entry]:
    """Every entry of ``<landing>/<kind>`` except hidden ones, in name order."""
    folder = kind_folder(landing_dir, kind)
    if folder is None:
        return []
    landing = landing_dir.resolve()
    return [
        _classify(p, folder, landing)
        for p in sorted(folder.iterdir())
        if not p.name.startswith(".")
    ]


def root_entries(landing_dir: Path, sources_path: Path | None = None) -> list[Entry]:
    """Entries at the top of the landing folder that are not read, with the reason."""
    if not landing_dir.is_dir():
        return []
    landing = landing_dir.resolve()
    out: list[Entry] = []
    for p in sorted(landing_dir.iterdir()):
        if p.name.startswith("."):
            continue
        if p.name in KINDS:
            target = p.resolve()
            if p.is_symlink() and not target.is_relative_to(landing):
                out.append(Entry(p.name, None, f"ignored: symlink outside the landing folder "
                                 f"(-> {target})"))  # fmt: skip
            elif not target.is_dir():
                out.append(Entry(p.name, None, f"ignored: not a folder (put files in {p.name}/)"))
            continue
        if p.name.lower() in ("sources.yml", "sources.yaml"):
            where = f" ({sources_path})" if sources_path else ""
            reason = (
                "ignored: a sources file in the landing folder is never used; the mapping is "
                f"read from the project configuration{where}"
            )
        elif p.is_dir():
            reason = "ignored: not a kind folder (use events/, customers/ or products/)"
        else:
            reason = "ignored: not in a kind folder (events/, customers/ or products/)"
        out.append(Entry(p.name, None, reason, _size(p)))
    return out


def landing_files(landing_dir: Path, kind: str) -> list[Path]:
    """The files of ``kind`` that would be read, links resolved, in name order."""
    return [e.real for e in kind_entries(landing_dir, kind) if e.real is not None]
