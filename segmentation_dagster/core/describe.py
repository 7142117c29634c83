"""The published segments described on the warehouse: what the ``segment_profiles`` asset and
the command line show about each segment.

:func:`describe` reads today's features, the published members and the champion, and writes
``segment_profiles`` (size, share, feature means, a one-line description, the champion's name
and a readable rule per segment), ``segment_feature_lift`` and ``segment_top_items`` (the
most purchased categories and products), and the catalog's descriptions and rules. The
science is in :mod:`~segmentation_dagster.core.profiling` and
:mod:`~segmentation_dagster.core.naming`.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import polars as pl

from segmentation_dagster.core import clustering, naming, profiling, registry, segments
from segmentation_dagster.core.warehouse import replace_table


@dataclass(frozen=True)
class Description:
    """What :func:`describe` wrote: the champion's version, the profiles, each segment's name
    and rule, the rules' fidelity to the model, and the top items per segment and kind."""

    version: int
    profiles: pl.DataFrame
    names: dict[int, str]
    rules: naming.SurrogateRules
    top_items: pl.DataFrame


def describe(con: duckdb.DuckDBPyConnection) -> Description:
    """Profile every published segment of the champion and record it (see the module)."""
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
    registry.update_catalog_text(
        con, dict(zip(profiles["segment_id"], profiles["description"], strict=True)), rules.rules
    )
    return Description(version, profiles, names, rules, top)
