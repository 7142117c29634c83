"""Segmentation: challenger fit, champion/challenger decision, assignment, profiles, history.

The science lives in core.clustering / core.lifecycle / core.naming / core.profiling; these
assets read and write DuckDB and publish what a person wants to see in the UI.
"""

import datetime as dt

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from segmentation_dagster.core import clustering, lifecycle, naming, profiling, registry
from segmentation_dagster.core.warehouse import md_table, one, replace_table
from segmentation_dagster.defs.ingestion.assets import DUCKDB_POOL
from segmentation_dagster.resources import ExportResource, ModelStoreResource, WarehouseResource

FEATURES_TABLE = "main.customer_features"
SEGMENTS_TABLE = "segmentation.customer_segments"
HISTORY_TABLE = "segmentation.segment_assignment_history"
PROFILES_TABLE = "segmentation.segment_profiles"
LIFT_TABLE = "segmentation.segment_feature_lift"
TOP_ITEMS_TABLE = "segmentation.segment_top_items"
MIGRATIONS_TABLE = "segmentation.segment_migrations"
EXPORTS_TABLE = "segmentation.segment_exports"


class SegmentationConfig(dg.Config):
    """How a challenger is selected and when it replaces the champion (launchpad-editable)."""

    k_min: int = Field(default=3, description="Smallest number of segments tried.")
    k_max: int = Field(default=10, description="Largest number of segments tried.")
    algorithms: list[str] = Field(
        default=["kmeans", "gmm"], description="Candidate families: kmeans, gmm (diagonal)."
    )
    silhouette_sample: int = Field(
        default=5_000, description="Customers sampled (fixed seed) for every pairwise metric."
    )
    search_sample: int = Field(
        default=50_000, description="Candidates and bootstraps are fitted on this many customers."
    )
    fit_sample: int = Field(
        default=200_000, description="The chosen candidate is refitted on this many customers."
    )
    min_segment_share: float = Field(
        default=0.02, description="A candidate with a smaller segment than this share is out."
    )
    silhouette_tolerance: float = Field(
        default=0.01, description="Fewest segments whose silhouette is within this of the best."
    )
    min_stability: float = Field(
        default=0.8, description="Minimum bootstrap stability (mean ARI between refits)."
    )
    exclude_features: list[str] = Field(
        default=list(clustering.DEFAULT_EXCLUDED),
        description="customer_features columns kept out of the fit (still profiled).",
    )
    promotion_margin: float = Field(
        default=0.01,
        description="Challenger must beat the champion's silhouette on today's data by this.",
    )
    max_match_distance: float = Field(
        default=1.5,
        description="Centroids farther apart than this (standardised units) are different "
        "segments: the new one gets a new id, the old one is retired.",
    )
    seed: int = Field(default=0, description="Random seed for sampling and fitting.")

    def selection(self) -> clustering.SelectionConfig:
        return clustering.SelectionConfig(
            k_min=self.k_min,
            k_max=self.k_max,
            algorithms=tuple(self.algorithms),  # type: ignore[arg-type]
            silhouette_sample=self.silhouette_sample,
            search_sample=self.search_sample,
            fit_sample=self.fit_sample,
            min_segment_share=self.min_segment_share,
            silhouette_tolerance=self.silhouette_tolerance,
            min_stability=self.min_stability,
            exclude=tuple(self.exclude_features),
            seed=self.seed,
        )


def read_features(con) -> pl.DataFrame:  # noqa: ANN001 - a DuckDB connection
    """customer_features in a stable order."""
    return con.sql(f"select * from {FEATURES_TABLE} order by customer_id").pl()


def _names_for_new_segments(
    model: clustering.FittedModel, features: pl.DataFrame, new_ids: set[int], taken: set[str]
) -> dict[int, str]:
    ids, _, _ = model.assign(features)
    segments = features.select("customer_id").with_columns(segment_id=ids)
    cols = list(model.plan.used)  # name by what the model could see, not by absent features
    prof = profiling.profile_segments(features, segments, cols)
    z = naming.zscores(prof.filter(pl.col("segment_id").is_in(list(new_ids))), features, cols)
    return naming.name_segments(z, taken) if z.height else {}


@dg.asset(
    group_name="segmentation",
    kinds={"sklearn", "duckdb"},
    deps=[dg.AssetKey("customer_features")],
    pool=DUCKDB_POOL,
)
def segmentation_model(
    context: dg.AssetExecutionContext,
    config: SegmentationConfig,
    warehouse: WarehouseResource,
    model_store: ModelStoreResource,
) -> dg.MaterializeResult:
    """Fit a challenger (KMeans / GMM over a k range, selection rule in core.clustering),
    align its segment ids with the champion's, and promote it only if it is better on today's
    data. Every model and decision is recorded in the registry."""
    with warehouse.connect() as con:
        features = read_features(con)
        challenger = clustering.fit(features, config.selection())
        current = registry.champion(con)
        next_id = registry.next_segment_id(con)
        alignment = None
        champ_version, champ_model = current if current else (None, None)
        if champ_model is not None:
            alignment = lifecycle.align_to_champion(
                challenger, champ_model, next_id, config.max_match_distance
            )
            challenger.segment_ids = alignment.segment_ids
        else:
            challenger.segment_ids = np.arange(next_id, next_id + challenger.k)
        decision = lifecycle.compare(
            challenger, champ_model, features, config.silhouette_sample,
            config.promotion_margin, config.seed,
        )  # fmt: skip
        snapshot = features["snapshot_date"].max()
        version = registry.save_model(con, challenger, model_store.dir, snapshot, features)
        names: dict[int, str] = {}
        if decision.promote:
            kept = registry.active_names(con)
            new_ids = {int(s) for s in challenger.segment_ids} - set(
                alignment.matched if alignment else ()
            )
            taken = {n for sid, n in kept.items() if sid in set(challenger.segment_ids.tolist())}
            names = _names_for_new_segments(challenger, features, new_ids, taken)
        registry.record_decision(con, version, champ_version, decision, alignment, names)
    context.log.info(f"model v{version}: {decision.reason}")
    dropped = "\n".join(f"- `{c}`: {why}" for c, why in challenger.plan.dropped.items())
    candidates = pl.DataFrame([c.as_row() for c in challenger.candidates])
    meta = {
        "model_version": version,
        "promoted": decision.promote,
        "decision": decision.reason,
        "champion_version": version if decision.promote else champ_version,
        "algorithm": challenger.algorithm,
        "k": challenger.k,
        "silhouette": challenger.silhouette,
        "selection_reason": challenger.selection_reason,
        "n_customers": challenger.n_train,
        "features_used": ", ".join(challenger.plan.used),
        "log_transformed": ", ".join(challenger.plan.log_transformed),
        "features_dropped": dg.MetadataValue.md(dropped or "none"),
        "candidates": dg.MetadataValue.md(md_table(candidates)),
    }
    if alignment is not None:
        meta["segment_alignment"] = dg.MetadataValue.md(md_table(pl.DataFrame(alignment.as_rows())))
    if names:
        meta["new_segment_names"] = dg.MetadataValue.json({str(k): v for k, v in names.items()})
    return dg.MaterializeResult(metadata=meta)


@dg.asset(
    group_name="segmentation",
    kinds={"duckdb"},
    deps=[segmentation_model, dg.AssetKey("customer_features")],
    pool=DUCKDB_POOL,
)
def customer_segments(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Every customer's segment under the champion: id, name, model version, distance to the
    centroid and confidence. Appended to the assignment history (idempotent per snapshot and
    model version)."""
    with warehouse.connect() as con:
        version, model = registry.require_champion(con)
        features = read_features(con)
        ids, distance, confidence = model.assign(features)
        names = registry.active_names(con)
        segments = features.select("customer_id", "snapshot_date").with_columns(
            segment_id=pl.Series(ids, dtype=pl.Int32),
            segment_name=pl.Series(ids).replace_strict(names, default=None, return_dtype=pl.String),
            model_version=pl.lit(version, dtype=pl.Int32),
            distance=pl.Series(distance),
            confidence=pl.Series(confidence),
        )
        snapshot = segments["snapshot_date"].max()
        con.execute("begin transaction")
        try:
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
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
    sizes = (
        segments.group_by("segment_id", "segment_name")
        .agg(customers=pl.len(), mean_confidence=pl.col("confidence").mean())
        .with_columns(share=pl.col("customers") / segments.height)
        .sort("segment_id")
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": n,
            "model_version": version,
            "snapshot_date": str(snapshot),
            "segments": sizes.height,
            "segment_sizes": dg.MetadataValue.md(md_table(sizes)),
        }
    )


@dg.asset(
    group_name="segmentation",
    kinds={"duckdb", "sklearn"},
    deps=[customer_segments],
    pool=DUCKDB_POOL,
)
def segment_profiles(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Per segment: name, size, share, feature means, lift vs the population, a one-line
    description, a readable rule from a surrogate decision tree (with its fidelity), and the
    most purchased categories and products."""
    with warehouse.connect() as con:
        version, model = registry.require_champion(con)
        features = read_features(con)
        segments = con.sql(f"select customer_id, segment_id from {SEGMENTS_TABLE}").pl()
        cols = clustering.candidate_columns(features)
        profiles = profiling.profile_segments(features, segments, cols)
        seg_ids = features.select("customer_id").join(segments, on="customer_id")["segment_id"]
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
        replace_table(con, PROFILES_TABLE, profiles)
        replace_table(con, LIFT_TABLE, lift)
        con.execute(
            f"create or replace table {TOP_ITEMS_TABLE} as "
            + profiling.top_items_sql(SEGMENTS_TABLE, "main.int_events_sessionised")
        )
        top = con.sql(
            f"select segment_id, kind, string_agg(item, ', ' order by purchases desc) as top "
            f"from {TOP_ITEMS_TABLE} group by all order by all"
        ).pl()
        registry.update_catalog_text(
            con,
            dict(zip(profiles["segment_id"], profiles["description"], strict=True)),
            rules.rules,
        )
    preview = profiles.select("segment_id", "segment_name", "size", "share", "description")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": profiles.height,
            "model_version": version,
            "profiles": dg.MetadataValue.md(md_table(preview)),
            "rules": dg.MetadataValue.md(
                "\n".join(f"- **{names.get(s, s)}** ({s}): {r}" for s, r in rules.rules.items())
            ),
            "surrogate_fidelity": rules.fidelity,
            "top_items": dg.MetadataValue.md(md_table(top)),
        }
    )


@dg.asset(
    group_name="segmentation",
    kinds={"duckdb"},
    deps=[customer_segments],
    pool=DUCKDB_POOL,
)
def segment_migrations(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Customers moving between segments from the previous assignment (an earlier snapshot or
    an earlier model) to the current one, as a from x to matrix."""
    with warehouse.connect() as con:
        cur = one(con, f"select max(snapshot_date), max(model_version) from {SEGMENTS_TABLE}")
        prev = one(
            con,
            f"select snapshot_date, model_version from {HISTORY_TABLE} "
            "where not (snapshot_date = ? and model_version = ?) "
            "order by snapshot_date desc, model_version desc limit 1",
            [cur[0], cur[1]],
        )
        current = con.sql(f"select customer_id, segment_id from {SEGMENTS_TABLE}").pl()
        if prev is None:
            previous = current.clear()
        else:
            previous = con.sql(
                f"select customer_id, segment_id from {HISTORY_TABLE} "
                "where snapshot_date = ? and model_version = ?",
                params=[prev[0], prev[1]],
            ).pl()
        matrix = lifecycle.migration_matrix(previous, current).with_columns(
            from_snapshot=pl.lit(prev[0] if prev else None, dtype=pl.Date),
            from_model_version=pl.lit(prev[1] if prev else None, dtype=pl.Int32),
            to_snapshot=pl.lit(cur[0], dtype=pl.Date),
            to_model_version=pl.lit(cur[1], dtype=pl.Int32),
        )
        replace_table(con, MIGRATIONS_TABLE, matrix)
    unchanged = lifecycle.unchanged_share(previous, current) if prev else None
    pivot = (
        matrix.with_columns(pl.col("to_segment").cast(pl.String).fill_null("left"))
        .pivot(on="to_segment", index="from_segment", values="customers")
        .fill_null(0)
    )
    return dg.MaterializeResult(
        metadata={
            "from": f"{prev[0]} v{prev[1]}" if prev else "nothing (first assignment)",
            "to": f"{cur[0]} v{cur[1]}",
            "unchanged_share": unchanged,
            "matrix": dg.MetadataValue.md(md_table(pivot)),
        }
    )


@dg.asset(
    group_name="segmentation",
    kinds={"duckdb", "parquet"},
    deps=[customer_segments],
    pool=DUCKDB_POOL,
)
def segment_export(warehouse: WarehouseResource, exports: ExportResource) -> dg.MaterializeResult:
    """Segment membership for activation tools, as Parquet and CSV: the full list and the
    changes since the previous export (one row per customer that joined or left a segment)."""
    with warehouse.connect() as con:
        current = con.sql(
            f"select customer_id, segment_id, segment_name, model_version, snapshot_date "
            f"from {SEGMENTS_TABLE} order by customer_id"
        ).pl()
        con.execute(
            f"create table if not exists {EXPORTS_TABLE} (exported_at timestamp, "
            "snapshot_date date, model_version integer, full_path varchar, changes_path varchar, "
            "customers bigint, joined bigint, left_ bigint)"
        )
        prev = one(con, f"select full_path from {EXPORTS_TABLE} order by exported_at desc limit 1")
        previous = (
            pl.read_parquet(prev[0]).select("customer_id", "segment_id")
            if prev
            else current.select("customer_id", "segment_id").clear()
        )
        changes = lifecycle.membership_changes(
            previous, current.select("customer_id", "segment_id")
        )
        snapshot, version = current["snapshot_date"].max(), int(current["model_version"].max())
        stem = f"segments_{snapshot}_v{version:04d}"
        full = exports.write(current, stem)
        delta = exports.write(changes, stem + "_changes")
        n_joined = changes.filter(pl.col("change") == "joined").height
        n_left = changes.height - n_joined
        con.execute(
            f"insert into {EXPORTS_TABLE} values (?, ?, ?, ?, ?, ?, ?, ?)",
            [dt.datetime.now(), snapshot, version, str(full), str(delta), current.height,
             n_joined, n_left],
        )  # fmt: skip
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": current.height,
            "full_list": dg.MetadataValue.path(str(full)),
            "changes": dg.MetadataValue.path(str(delta)),
            "joined": n_joined,
            "left": n_left,
        }
    )
