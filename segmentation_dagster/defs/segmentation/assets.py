"""Segmentation: fit a clustering model on customer_features, assign every customer, profile.

The science lives in core.clustering / core.profiling; these assets read and write DuckDB and
publish what a person wants to see in the UI.
"""

import dagster as dg
import polars as pl
from pydantic import Field

from segmentation_dagster.core import clustering, profiling, registry
from segmentation_dagster.core.warehouse import replace_table
from segmentation_dagster.defs.ingestion.assets import DUCKDB_POOL
from segmentation_dagster.resources import ModelStoreResource, WarehouseResource

FEATURES_TABLE = "main.customer_features"
SEGMENTS_TABLE = "segmentation.customer_segments"
PROFILES_TABLE = "segmentation.segment_profiles"


class SegmentationConfig(dg.Config):
    """How the model is selected (launchpad-editable)."""

    k_min: int = Field(default=3, description="Smallest number of segments tried.")
    k_max: int = Field(default=10, description="Largest number of segments tried.")
    silhouette_sample: int = Field(
        default=5_000, description="Customers sampled (fixed seed) to score each k by silhouette."
    )
    fit_sample: int = Field(
        default=200_000, description="At most this many customers are used to fit KMeans."
    )
    seed: int = Field(default=0, description="Random seed for sampling and KMeans.")


def read_features(con) -> pl.DataFrame:  # noqa: ANN001 - a DuckDB connection
    """customer_features in a stable order."""
    return con.sql(f"select * from {FEATURES_TABLE} order by customer_id").pl()


def _md_table(df: pl.DataFrame, float_fmt: str = "{:.3g}") -> str:
    def fmt(v: object) -> str:
        return float_fmt.format(v) if isinstance(v, float) else str(v)

    head = "| " + " | ".join(df.columns) + " |\n|" + "---|" * df.width + "\n"
    return head + "\n".join("| " + " | ".join(fmt(v) for v in r) + " |" for r in df.iter_rows())


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
    """KMeans on the scaled behaviour features, k chosen by silhouette on a fixed sample.

    The fitted preprocessing + model is written to the model store (write then rename) and
    registered in segmentation.model_registry.
    """
    selection = clustering.SelectionConfig(
        k_min=config.k_min,
        k_max=config.k_max,
        silhouette_sample=config.silhouette_sample,
        fit_sample=config.fit_sample,
        seed=config.seed,
    )
    with warehouse.connect() as con:
        features = read_features(con)
        model = clustering.fit(features, selection)
        snapshot = features["snapshot_date"].max() if features.height else None
        version = registry.save(con, model, model_store.dir, snapshot)
    for col, why in model.plan.dropped.items():
        context.log.info(f"feature {col} left out: {why}")
    scores = pl.DataFrame(
        {"k": list(model.scores), "silhouette": list(model.scores.values())}
    ).with_columns(chosen=pl.col("k") == model.k)
    dropped = "\n".join(f"- `{c}`: {why}" for c, why in model.plan.dropped.items()) or "none"
    return dg.MaterializeResult(
        metadata={
            "model_version": version,
            "k": model.k,
            "silhouette": model.silhouette,
            "n_customers": model.n_train,
            "features_used": ", ".join(model.plan.used),
            "log_transformed": ", ".join(model.plan.log_transformed),
            "features_dropped": dg.MetadataValue.md(dropped),
            "silhouette_by_k": dg.MetadataValue.md(_md_table(scores)),
        }
    )


@dg.asset(
    group_name="segmentation",
    kinds={"duckdb"},
    deps=[segmentation_model, dg.AssetKey("customer_features")],
    pool=DUCKDB_POOL,
)
def customer_segments(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Every customer's segment id under the latest model, with the distance to its centroid."""
    with warehouse.connect() as con:
        version, model = registry.load_latest(con)
        features = read_features(con)
        labels, distance = model.assign(features)
        segments = features.select("customer_id", "snapshot_date").with_columns(
            segment_id=pl.Series(labels + 1, dtype=pl.Int32),
            distance=pl.Series(distance),
            model_version=pl.lit(version, dtype=pl.Int32),
        )
        n = replace_table(con, SEGMENTS_TABLE, segments)
    sizes = (
        segments.group_by("segment_id")
        .agg(customers=pl.len())
        .with_columns(share=pl.col("customers") / segments.height)
        .sort("segment_id")
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": n,
            "model_version": version,
            "segments": sizes.height,
            "segment_sizes": dg.MetadataValue.md(_md_table(sizes)),
        }
    )


@dg.asset(
    group_name="segmentation",
    kinds={"duckdb"},
    deps=[customer_segments],
    pool=DUCKDB_POOL,
)
def segment_profiles(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Per segment: size, share, mean of every feature and a one-line description."""
    with warehouse.connect() as con:
        version, model = registry.load_latest(con)
        features = read_features(con)
        segments = con.sql(f"select customer_id, segment_id from {SEGMENTS_TABLE}").pl()
        profiles = profiling.profile_segments(features, segments, model.plan.used).with_columns(
            model_version=pl.lit(version, dtype=pl.Int32)
        )
        replace_table(con, PROFILES_TABLE, profiles)
    preview = profiles.select("segment_id", "size", "share", "description")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": profiles.height,
            "model_version": version,
            "profiles": dg.MetadataValue.md(_md_table(preview)),
        }
    )
