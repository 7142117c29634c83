"""The published segments described on the warehouse: what the ``segment_profiles`` asset and
the command line show about each segment.

:func:`describe` reads today's features, the published members and the champion, and writes
``segment_profiles`` (size, share, feature means, a one-line description, the champion's name
and a readable rule per segment), ``segment_feature_lift``, ``segment_top_items`` (the most
purchased categories and products), ``segment_playbooks`` (the recommended action, its
evidence and items; :mod:`~segmentation_dagster.core.playbooks`) and the catalog's
descriptions and rules. The
science is in :mod:`~segmentation_dagster.core.profiling` and
:mod:`~segmentation_dagster.core.naming`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import duckdb
import numpy as np
import polars as pl

from segmentation_dagster.core import (
    clustering,
    monitoring,
    naming,
    playbooks,
    profiling,
    registry,
    segments,
)
from segmentation_dagster.core.warehouse import replace_table, table_exists

#: customers drawn for the segment map
MAP_SAMPLE = 3_000


@dataclass(frozen=True)
class Description:
    """What :func:`describe` wrote: the champion's version, the profiles, each segment's name
    and rule, the rules' fidelity to the model, and the top items per segment and kind."""

    version: int
    profiles: pl.DataFrame
    names: dict[int, str]
    rules: naming.SurrogateRules
    top_items: pl.DataFrame
    #: segment x feature: segment mean, population mean, lift and z
    lift: pl.DataFrame
    #: a sample of customers in the model's space, and their segments (for the map)
    map_x: np.ndarray
    map_segments: np.ndarray
    #: per segment: the playbook, its action, the evidence and the recommended items
    playbooks: pl.DataFrame


def describe(
    con: duckdb.DuckDBPyConnection, rules_file: playbooks.Playbooks | None = None
) -> Description:
    """Profile every published segment of the champion and record it (see the module), with
    the playbook each segment gets from ``rules_file`` (default: :func:`playbooks.load`)."""
    rules_file = rules_file or playbooks.load()
    version, model = registry.require_champion(con)
    features = segments.read_features(con)
    members = segments.published_members(con)
    cols = clustering.candidate_columns(features)
    profiles = profiling.profile_segments(features, members, cols)
    seg_ids = features.select("customer_id").join(
        members, on="customer_id", how="left", maintain_order="left"
    )["segment_id"]
    raw = features.select(pl.col(model.plan.used).cast(pl.Float64)).to_numpy()
    rules = naming.surrogate_rules(raw, seg_ids.to_numpy(), model.plan.used)
    names = registry.active_names(con)
    profiles = profiles.with_columns(
        segment_name=pl.Series([names.get(int(s)) for s in profiles["segment_id"]]),
        rule=pl.Series([rules.rules.get(int(s)) for s in profiles["segment_id"]]),
        model_version=pl.lit(version, dtype=pl.Int32),
    ).select("segment_id", "segment_name", "size", "share", "description", "rule",
             "model_version", *cols)  # fmt: skip
    lift = profiling.feature_lift(profiles, features, cols)
    replace_table(con, segments.PROFILES_TABLE, profiles)
    replace_table(con, segments.LIFT_TABLE, lift)
    con.execute(
        f"create or replace table {segments.TOP_ITEMS_TABLE} as "
        + profiling.top_items_sql(segments.SEGMENTS_TABLE, segments.RECENT_PURCHASES_TABLE)
    )
    top = con.sql(
        "select segment_id, kind, string_agg(item, ', ' order by purchases desc) as top "
        f"from {segments.TOP_ITEMS_TABLE} group by all order by all"
    ).pl()
    plays = playbooks.choose(
        lift, con.sql(f"select * from {segments.TOP_ITEMS_TABLE}").pl(), rules_file
    ).with_columns(model_version=pl.lit(version, dtype=pl.Int32))
    replace_table(con, segments.PLAYBOOKS_TABLE, plays)
    registry.update_catalog_text(
        con, dict(zip(profiles["segment_id"], profiles["description"], strict=True)), rules.rules
    )
    sample = clustering.sample_idx(features.height, MAP_SAMPLE, 0)
    sample = sample[seg_ids.gather(sample).is_not_null().to_numpy()]
    map_x = model.transform(features[sample])
    map_segments = seg_ids.gather(sample).to_numpy()
    return Description(version, profiles, names, rules, top, lift, map_x, map_segments, plays)


def share_history(con: duckdb.DuckDBPyConnection, today: pl.DataFrame) -> pl.DataFrame:
    """snapshot_date, segment_id, share: every day the segment-share monitor recorded (its
    latest check of the day), with ``today`` (snapshot_date, segment_id, share) in place of
    today's record. Reads the monitor's small history, never the assignment history."""
    rows: list[tuple] = []
    if table_exists(con, *monitoring.HISTORY.split(".")):
        recorded = con.sql(
            f"select snapshot_date, details from {monitoring.HISTORY} "
            "where monitor = 'segment_share_psi' "
            "qualify row_number() over (partition by snapshot_date order by checked_at desc) = 1"
        ).fetchall()
        for day, details in recorded:
            shares = json.loads(details).get("today", {}) if details else {}
            rows += [(day, int(sid), float(share)) for sid, share in shares.items()]
    history = pl.DataFrame(
        rows, schema={"snapshot_date": pl.Date, "segment_id": pl.Int64, "share": pl.Float64},
        orient="row",
    )  # fmt: skip
    today = today.select(
        pl.col("snapshot_date").cast(pl.Date),
        pl.col("segment_id").cast(pl.Int64),
        pl.col("share").cast(pl.Float64),
    )
    days = today["snapshot_date"].unique()
    return pl.concat([history.filter(~pl.col("snapshot_date").is_in(days.implode())), today])
