"""The monitors' record in DuckDB: ``monitoring.drift_history``, one row per check.

Each monitor (behaviour drift, segment-share PSI, model quality) appends its score and details
for the day's snapshot against the champion's reference; the scores are computed in
:mod:`segmentation_dagster.core.drift`.
"""

from __future__ import annotations

import datetime as dt
import json

import duckdb

SCHEMA = "monitoring"
HISTORY = f"{SCHEMA}.drift_history"


def append_history(
    con: duckdb.DuckDBPyConnection,
    snapshot: dt.date,
    reference_version: int,
    monitor: str,
    score: float,
    details: object,
) -> None:
    """Record one check: its snapshot, the reference version, the monitor, its score and its
    details (JSON)."""
    con.execute(f"create schema if not exists {SCHEMA}")
    con.execute(
        f"create table if not exists {HISTORY} (checked_at timestamp, snapshot_date date, "
        "reference_version integer, monitor varchar, score double, details json)"
    )
    con.execute(
        f"insert into {HISTORY} values (?, ?, ?, ?, ?, ?)",
        [dt.datetime.now(), snapshot, reference_version, monitor, score,
         json.dumps(details, default=str)],
    )  # fmt: skip
