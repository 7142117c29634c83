"""The published segmentation in DuckDB: the features it reads, every customer's segment, the
assignment history and the exports' record.

Tables:

- ``main.customer_features`` (the dbt mart, read only here): one row per customer;
- ``segmentation.customer_segments``: every customer's segment under the champion today;
- ``segmentation.segment_assignment_history``: every published assignment, one per snapshot
  date and model version (a re-run of the same day and model replaces its rows);
- ``segmentation.segment_exports``: every export written for activation tools.

The daily assignment (:func:`assign`) runs the fitted model compiled to SQL inside DuckDB; the
Dagster assets call these functions and publish what they return.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import duckdb
import numpy as np
import polars as pl

from segmentation_dagster.core import checks, compiled
from segmentation_dagster.core.clustering import FittedModel
from segmentation_dagster.core.warehouse import one, replace_table, table_exists, transaction

FEATURES_TABLE = "main.customer_features"
RECENT_PURCHASES_TABLE = "main.customer_recent_purchases"
SEGMENTS_TABLE = "segmentation.customer_segments"
HISTORY_TABLE = "segmentation.segment_assignment_history"
PROFILES_TABLE = "segmentation.segment_profiles"
LIFT_TABLE = "segmentation.segment_feature_lift"
TOP_ITEMS_TABLE = "segmentation.segment_top_items"
PLAYBOOKS_TABLE = "segmentation.segment_playbooks"
VALUE_TABLE = "segmentation.customer_value"
INTERESTS_TABLE = "segmentation.customer_interests"
MIGRATIONS_TABLE = "segmentation.segment_migrations"
EXPORTS_TABLE = "segmentation.segment_exports"


@dataclass(frozen=True)
class AssignmentConfig:
    """How the daily assignment moves customers between the champion's segments."""

    #: a customer leaves their segment only for one whose centroid is nearer by more than this
    #: share of the distance to their own (0: always the nearest)
    hysteresis: float = 0.1
    #: a customer whose behaviour changed significantly in the last this-many days
    #: (``customer_features.last_regime_change``) moves to the nearest segment freely
    free_after_change_days: int = 7

    #: each field's range (docs/configuration.md, "Ranges")
    RULES: ClassVar[dict[str, checks.Rule]] = {
        "hysteresis": checks.number(0, 1),  # 1: a customer never leaves
        "free_after_change_days": checks.whole(0),
    }

    def __post_init__(self) -> None:
        checks.apply(self, self.RULES)


def read_features(
    con: duckdb.DuckDBPyConnection, sample: int | None = None, seed: int = 0
) -> pl.DataFrame:
    """customer_features in customer order; with ``sample``, at most that many customers: those
    first by :func:`compiled.sample_order` (the customers Spark's loop samples with the same
    size and seed, so both engines fit on the same rows)."""
    if sample is None:
        return con.sql(f"select * from {FEATURES_TABLE} order by customer_id").pl()
    rows = one(con, f"select count(*) from {FEATURES_TABLE}")[0]
    picked = compiled.sample(lambda q: con.sql(q).pl(), FEATURES_TABLE, sample, seed, rows)
    return picked.sort("customer_id")


def current_segments(con: duckdb.DuckDBPyConnection, features: pl.DataFrame) -> np.ndarray:
    """Each row of ``features``' published segment id (-1 for a customer without one yet)."""
    if not table_exists(con, *SEGMENTS_TABLE.split(".")):
        return np.full(features.height, -1)
    current = con.sql(f"select customer_id, segment_id from {SEGMENTS_TABLE}").pl()
    return (
        features.select("customer_id")
        .join(current, on="customer_id", how="left", maintain_order="left")["segment_id"]
        .fill_null(-1)
        .to_numpy(writable=True)
    )


def assign(
    con: duckdb.DuckDBPyConnection,
    model: FittedModel,
    version: int,
    names: dict[int, str],
    config: AssignmentConfig | None = None,
) -> pl.DataFrame:
    """Every customer of customer_features and their segment under ``model``: id, name, model
    version, distance to the centroid and confidence, computed inside DuckDB by the model
    compiled to SQL (:mod:`compiled`; the features never come into Python). A customer keeps
    their published segment unless another is clearly nearer (``config.hysteresis``) or their
    behaviour changed in the last ``config.free_after_change_days`` days."""
    config = config or AssignmentConfig()
    labels = pl.DataFrame(
        {"segment_id": list(names), "segment_name": list(names.values())},
        schema={"segment_id": pl.Int32, "segment_name": pl.String},
    )
    query = compiled.assignment_sql(
        model, FEATURES_TABLE, previous="previous_segment", margin=config.hysteresis,
        carry=("snapshot_date",),
    )  # fmt: skip
    try:
        if table_exists(con, *SEGMENTS_TABLE.split(".")):
            con.execute(
                "create or replace temp table previous_segment as "
                f"select s.customer_id, s.segment_id from {SEGMENTS_TABLE} s "
                f"join {FEATURES_TABLE} f using (customer_id) "
                "where not coalesce(f.last_regime_change > f.snapshot_date - to_days(?), false)",
                [int(config.free_after_change_days)],
            )
        else:
            con.execute(
                "create or replace temp table previous_segment "
                "(customer_id varchar, segment_id integer)"
            )
        con.register("segment_label", labels.to_arrow())
        return con.sql(
            "select a.customer_id, a.snapshot_date, a.segment_id::integer as segment_id, "
            "l.segment_name, ?::integer as model_version, a.distance, a.confidence "
            f"from ({query}) a left join segment_label l on l.segment_id = a.segment_id "
            "order by a.customer_id",
            params=[int(version)],
        ).pl()
    finally:
        con.unregister("segment_label")
        con.execute("drop table if exists previous_segment")


def publish(con: duckdb.DuckDBPyConnection, segments: pl.DataFrame) -> int:
    """Replace customer_segments with ``segments`` and record them in the assignment history
    (replacing that snapshot and model version's earlier rows), in one transaction. Returns
    the rows published."""
    snapshot = segments["snapshot_date"].max()
    version = int(segments["model_version"].max())
    with transaction(con):
        n = replace_table(con, SEGMENTS_TABLE, segments)
        con.execute(
            f"create table if not exists {HISTORY_TABLE} (snapshot_date date, "
            "model_version integer, customer_id varchar, segment_id integer, "
            "recorded_at timestamp)"
        )
        con.execute(
            f"delete from {HISTORY_TABLE} where snapshot_date = ? and model_version = ?",
            [snapshot, version],
        )
        con.execute(
            f"insert into {HISTORY_TABLE} select snapshot_date, model_version, customer_id, "
            f"segment_id, ? from {SEGMENTS_TABLE}",
            [dt.datetime.now()],
        )
    return n


def published_members(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """customer_id and segment_id of today's published assignment."""
    return con.sql(f"select customer_id, segment_id from {SEGMENTS_TABLE}").pl()


def previous_assignment(
    con: duckdb.DuckDBPyConnection,
) -> tuple[tuple, tuple | None, pl.DataFrame]:
    """Today's (snapshot date, model version), the assignment before it in the history (an
    earlier snapshot or an earlier model; None for the first) and that assignment's members."""
    cur = one(con, f"select max(snapshot_date), max(model_version) from {SEGMENTS_TABLE}")
    prev = one(
        con,
        f"select snapshot_date, model_version from {HISTORY_TABLE} "
        "where not (snapshot_date = ? and model_version = ?) "
        "order by snapshot_date desc, model_version desc limit 1",
        [cur[0], cur[1]],
    )
    if prev is None:
        return cur, None, published_members(con).clear()
    members = con.sql(
        f"select customer_id, segment_id from {HISTORY_TABLE} "
        "where snapshot_date = ? and model_version = ?",
        params=[prev[0], prev[1]],
    ).pl()
    return cur, prev, members


def members_before(
    con: duckdb.DuckDBPyConnection, day: dt.date
) -> tuple[dt.date, pl.DataFrame] | None:
    """The last assignment recorded for a snapshot before ``day`` (the latest model's of that
    snapshot): its date and customer_id, segment_id; None when the history starts later."""
    found = one(
        con,
        f"select snapshot_date, model_version from {HISTORY_TABLE} where snapshot_date < ? "
        "order by snapshot_date desc, model_version desc limit 1",
        [day],
    ) if table_exists(con, *HISTORY_TABLE.split(".")) else None  # fmt: skip
    if found is None:
        return None
    members = con.sql(
        f"select customer_id::varchar as customer_id, segment_id from {HISTORY_TABLE} "
        "where snapshot_date = ? and model_version = ?",
        params=[found[0], found[1]],
    ).pl()
    return found[0], members


def export_list(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Segment membership as exported: one row per customer, with the segment's playbook and
    the customer's churn risk and expected spend, ours and BG/NBD's (null for one who never
    bought): the asset's spend_verdict says which served the shop better."""
    plays = table_exists(con, *PLAYBOOKS_TABLE.split("."))
    scored = table_exists(con, *VALUE_TABLE.split("."))
    return con.sql(
        "select s.customer_id, s.segment_id, s.segment_name, "
        + ("p.playbook, " if plays else "cast(null as varchar) as playbook, ")
        + ("v.churn_risk, v.expected_spend, v.expected_spend_bgnbd, " if scored else
           "cast(null as double) as churn_risk, cast(null as double) as expected_spend, "
           "cast(null as double) as expected_spend_bgnbd, ")
        + f"s.model_version, s.snapshot_date from {SEGMENTS_TABLE} s "
        + (f"left join {PLAYBOOKS_TABLE} p using (segment_id) " if plays else "")
        + (f"left join {VALUE_TABLE} v on v.customer_id = s.customer_id::varchar "
           if scored else "")
        + "order by s.customer_id"
    ).pl()  # fmt: skip


def _ensure_exports(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        f"create table if not exists {EXPORTS_TABLE} (exported_at timestamp, "
        "snapshot_date date, model_version integer, full_path varchar, changes_path varchar, "
        "customers bigint, joined bigint, left_ bigint)"
    )


def last_export(con: duckdb.DuckDBPyConnection, other_than: Path | None = None) -> Path | None:
    """The full list written by the latest export (None before the first) other than
    ``other_than``: a re-run of the same snapshot and model rewrites that file, and its
    changes are those since the export before it."""
    _ensure_exports(con)
    row = one(
        con,
        f"select full_path from {EXPORTS_TABLE} where full_path is distinct from ? "
        "order by exported_at desc limit 1",
        [str(other_than) if other_than else None],
    )
    return Path(row[0]) if row else None


def record_export(
    con: duckdb.DuckDBPyConnection,
    snapshot: dt.date,
    version: int,
    full: Path,
    changes: Path,
    customers: int,
    joined: int,
    left: int,
) -> None:
    """Record an export (its files, its size, who joined and left a segment)."""
    _ensure_exports(con)
    con.execute(
        f"insert into {EXPORTS_TABLE} values (?, ?, ?, ?, ?, ?, ?, ?)",
        [dt.datetime.now(), snapshot, version, str(full), str(changes), customers, joined, left],
    )
