"""Bring your own data: map your files' columns and formats onto the contract in a YAML file.

The sources file is ``$SEGMENTATION_SOURCES`` or, if that is unset, ``<landing>/sources.yml``
when it exists. Every entry under ``columns`` is a DuckDB SQL expression over your file's
columns that yields the contract column; contract columns you do not map are taken from a
same-named column if the file has one. CSV files are read as text, so conversions are explicit.
A plain orders export::

    events:
      csv: {delim: ";"}                    # optional read_csv options
      columns:
        event_id: "order_id || '-' || line_no"
        customer_id: "cust_no"
        event_ts: "try_strptime(order_date, '%Y%m%d')"   # YYYYMMDD text
        event_type: "'purchase'"
        quantity: "qty"
        price: "try_cast(replace(amount, ',', '.') as double) / try_cast(qty as double)"

Use ``try_``-functions (``try_strptime``, ``try_cast``) so one bad value quarantines one row
instead of rejecting the whole file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

KINDS = ("events", "customers", "products")


class SourceConfigError(ValueError):
    """The sources file is malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class SourceMapping:
    """Per kind: contract column -> SQL expression, and CSV reader options."""

    columns: dict[str, dict[str, str]] = field(default_factory=dict)
    csv: dict[str, dict[str, object]] = field(default_factory=dict)
    path: Path | None = None

    def expressions(self, kind: str) -> dict[str, str]:
        return self.columns.get(kind, {})

    def csv_options(self, kind: str) -> dict[str, object]:
        return self.csv.get(kind, {})


def load_mapping(path: Path | None) -> SourceMapping:
    """Read and check a sources file; ``None`` or a missing default means identity mapping."""
    if path is None or not path.exists():
        return SourceMapping()
    from segmentation_dagster.core.ingest import CONTRACTS

    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise SourceConfigError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(raw, dict):
        raise SourceConfigError(f"{path}: expected a mapping of kinds ({', '.join(KINDS)})")
    columns: dict[str, dict[str, str]] = {}
    csv: dict[str, dict[str, object]] = {}
    for kind, spec in raw.items():
        if kind not in KINDS:
            raise SourceConfigError(f"{path}: unknown kind {kind!r}; use one of {KINDS}")
        spec = spec or {}
        unknown = set(spec) - {"columns", "csv"}
        if unknown:
            raise SourceConfigError(f"{path}: {kind}: unknown key(s) {sorted(unknown)}")
        cols = {str(k): str(v) for k, v in (spec.get("columns") or {}).items()}
        bad = sorted(set(cols) - set(CONTRACTS[kind].columns))
        if bad:
            raise SourceConfigError(
                f"{path}: {kind}.columns: {bad} are not contract columns "
                f"({', '.join(CONTRACTS[kind].columns)})"
            )
        columns[kind] = cols
        csv[kind] = dict(spec.get("csv") or {})
    return SourceMapping(columns, csv, path)


def mapping_path(landing_dir: Path) -> Path | None:
    """Where the sources file is looked for."""
    env = os.environ.get("SEGMENTATION_SOURCES")
    return Path(env) if env else landing_dir / "sources.yml"
