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
from segmentation_dagster.core.warehouse import md_table, one, replace_table, table_exists
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


_SEL = clustering.SelectionConfig()
_LIFE = lifecycle.LifecycleConfig()


class SegmentationConfig(dg.Config):
    """How a challenger is selected and when it replaces the champion (launchpad-editable).
    Defaults are the core dataclasses' (clustering.SelectionConfig, lifecycle.LifecycleConfig)."""

    k_min: int = Field(default=_SEL.k_min, description="Smallest number of segments tried.")
    k_max: int = Field(default=_SEL.k_max, description="Largest number of segments tried.")
    algorithms: list[str] = Field(
        default=list(_SEL.algorithms),
        description=f"Candidate families, from {', '.join(clustering.ALGORITHMS)} (gmm: a "
        "diagonal Gaussian mixture).",
    )
    silhouette_sample: int = Field(
        default=_SEL.silhouette_sample,
        description="Customers sampled (fixed seed) for every pairwise metric.",
    )
    search_sample: int = Field(
        default=_SEL.search_sample,
        description="Candidates and bootstraps are fitted on this many customers.",
    )
    fit_sample: int = Field(
        default=_SEL.fit_sample,
        description="A chosen KMeans is refitted on this many customers.",
    )
    min_segment_share: float = Field(
        default=_SEL.min_segment_share,
        description="A candidate with a smaller segment than this share is out.",
    )
    silhouette_tolerance: float | None = Field(
        default=_SEL.silhouette_tolerance,
        description="Fewest segments whose silhouette is within this of the best (empty: one "
        "standard error of the best candidate's silhouette).",
    )
    min_stability: float = Field(
        default=_SEL.min_stability,
        description="Minimum bootstrap stability (mean ARI between refits).",
    )
    exclude_features: list[str] = Field(
        default=list(_SEL.exclude),
        description="customer_features columns kept out of the fit (still profiled).",
    )
    keep_overlap: float = Field(
        default=_LIFE.keep_overlap,
        description="A challenger segment keeps a current segment's id when their members "
        "overlap at least this much (Jaccard).",
    )
    structure_tolerance: float = Field(
        default=_LIFE.structure_tolerance,
        description="A challenger that retires segments the customers have left is promoted "
        "unless its silhouette is worse by more than this.",
    )
    far_quantile: float = Field(
        default=_LIFE.far_quantile,
        description="A customer is far from their segment beyond this quantile of its members' "
        "distances at fit; a dense group of far customers can become a new segment.",
    )
    promotion_margin: float = Field(
        default=_LIFE.promotion_margin,
        description="Without a structural change the challenger must beat the champion's "
        "silhouette on today's customers by this.",
    )
    seed: int = Field(default=_SEL.seed, description="Random seed for sampling and fitting.")

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

    def lifecycle(self) -> lifecycle.LifecycleConfig:
        return lifecycle.LifecycleConfig(
            keep_overlap=self.keep_overlap,
            structure_tolerance=self.structure_tolerance,
            promotion_margin=self.promotion_margin,
            far_quantile=self.far_quantile,
            min_change_share=self.min_segment_share,
            sample=self.silhouette_sample,
            seed=self.seed,
        )


def read_features(con) -> pl.DataFrame:  # noqa: ANN001 - a DuckDB connection
    """customer_features in a stable order."""
    return con.sql(f"select * from {FEATURES_TABLE} order by customer_id").pl()


def current_segments(con, features: pl.DataFrame) -> np.ndarray:  # noqa: ANN001
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
    """Re-segmentation (core.lifecycle.resegment): fit a challenger on today's features (KMeans,
    Ward and HDBSCAN candidates, selection rule in core.clustering), match its segments to the
    current ones by their members (kept / split / merged / new / retired), and promote it when
    it adds segments that describe today's customers better, retires segments they have left,
    or is clearly better. A champion that stays is re-validated: today's features become its
    drift reference. Every model, decision and transition is recorded in the registry."""
    with warehouse.connect() as con:
        features = read_features(con)
        current = registry.champion(con)
        champ_version, champ_model = current if current else (None, None)
        published = current_segments(con, features)
        if champ_model is not None:  # customers new since the last assignment: the champion's
            missing = published < 0
            if missing.any():
                published[missing] = champ_model.assign(features.filter(pl.Series(missing)))[0]
        fit_shares = far = None
        if champ_model is not None:
            fit_shares = registry.reference_shares(con, champ_version, champ_model, at_fit=True)
            fit_reference = pl.read_parquet(registry.fit_reference_path(con, champ_version))
            far = lifecycle.far_quantiles(champ_model, fit_reference, config.far_quantile)
        result = lifecycle.resegment(
            features,
            champ_model,
            published if champ_model is not None else None,
            registry.next_segment_id(con),
            registry.active_names(con),
            config.selection(),
            config.lifecycle(),
            fit_shares,
            far,
        )
        challenger, alignment, decision = result.challenger, result.alignment, result.decision
        snapshot = features["snapshot_date"].max()
        version = registry.save_model(con, challenger, model_store.dir, snapshot, features)
        registry.record_decision(con, version, champ_version, decision, alignment, result.names)
        if not decision.promote and champ_version is not None:
            # the champion was validated on today's customers: they are the drift reference now
            registry.revalidate(con, champ_version, model_store.dir, snapshot, features)
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
        meta["transitions"] = dg.MetadataValue.md(md_table(pl.DataFrame(alignment.as_rows())))
        for kind, n in alignment.counts().items():
            meta[f"segments_{kind}"] = n
    if result.names:
        meta["new_segment_names"] = dg.MetadataValue.json(
            {str(k): v for k, v in result.names.items()}
        )
    return dg.MaterializeResult(metadata=meta)


class AssignmentConfig(dg.Config):
    """How the daily assignment moves customers between the champion's segments."""

    hysteresis: float = Field(
        default=0.1,
        description="A customer leaves their segment only for one whose centroid is nearer by "
        "more than this share of the distance to their own (0: always the nearest).",
    )
    free_after_change_days: int = Field(
        default=7,
        description="A customer whose behaviour changed significantly in the last this-many "
        "days (customer_features.last_regime_change) moves to the nearest segment freely.",
    )


@dg.asset(
    group_name="segmentation",
    kinds={"duckdb"},
    deps=[segmentation_model, dg.AssetKey("customer_features")],
    pool=DUCKDB_POOL,
)
def customer_segments(
    config: AssignmentConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Every customer's segment under the champion: id, name, model version, distance to the
    centroid and confidence. A customer whose behaviour now matches another segment moves
    there (the features describe behaviour now), with hysteresis against one day's noise.
    Appended to the assignment history (idempotent per snapshot and model version)."""
    with warehouse.connect() as con:
        version, model = registry.require_champion(con)
        features = read_features(con)
        previous = current_segments(con, features)
        changed = features["last_regime_change"] > (
            features["snapshot_date"] - dt.timedelta(days=config.free_after_change_days)
        )
        previous[changed.fill_null(False).to_numpy()] = -1
        ids, distance, confidence = model.assign(
            features, previous_ids=previous, margin=config.hysteresis
        )
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
    deps=[customer_segments, dg.AssetKey("customer_recent_purchases")],
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
            + profiling.top_items_sql(SEGMENTS_TABLE, "main.customer_recent_purchases")
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
