"""Monitoring: is today's behaviour still what the champion was fitted on?

Three daily monitors against the champion's reference snapshot (the features it was fitted
on): behaviour drift per feature (Evidently, effect sizes), segment-share drift (PSI) and
model-quality decay. Each appends to monitoring.drift_history; the drift sensor reads the
behaviour_drift materialisation metadata (it computes nothing itself).
"""

from pathlib import Path

import dagster as dg
import polars as pl

from segmentation_dagster.core import drift, health, project, registry, segments
from segmentation_dagster.core import reports as report_files
from segmentation_dagster.core.monitoring import append_history
from segmentation_dagster.core.warehouse import one
from segmentation_dagster.defs import health as checks
from segmentation_dagster.defs.config import core_field, to_core
from segmentation_dagster.defs.metadata import table
from segmentation_dagster.defs.resources import DUCKDB_POOL, ReportsResource, WarehouseResource

#: every monitor reads today's assignment
SEGMENTS = dg.AssetKey("customer_segments")


_DRIFT = drift.DriftConfig()


class DriftMonitorConfig(dg.Config):
    """Drift method and thresholds, set explicitly (Evidently's defaults depend on sample size).
    Defaults are the core dataclass's (core.drift.DriftConfig)."""

    method: str | None = core_field(_DRIFT, "method", "Evidently drift method for every feature.")
    threshold: float | None = core_field(
        _DRIFT,
        "threshold",
        "A feature drifts when its effect size (normed Wasserstein: shift in reference standard "
        "deviations) exceeds its threshold: this number for every feature. Unset everywhere "
        "(the default), each feature's threshold is calibrated on the reference (bootstrap: "
        "margin x the 95th percentile of chance effects, at least min_threshold).",
    )
    min_threshold: float | None = core_field(
        _DRIFT, "min_threshold", "Floor of a calibrated threshold."
    )
    margin: float | None = core_field(
        _DRIFT, "margin", "Calibrated threshold = margin x chance effect (95th pct)."
    )
    per_column: dict[str, list] | None = core_field(
        _DRIFT, "per_column", 'Overrides: {"feature": ["method", threshold]}.'
    )
    sample_size: int | None = core_field(
        _DRIFT, "sample_size", "Rows sampled (fixed seed) per side."
    )
    seed: int | None = core_field(_DRIFT, "seed", "Sampling seed.")

    def drift_config(self, base: drift.DriftConfig | None = None) -> drift.DriftConfig:
        per_column = (
            None
            if self.per_column is None
            else {k: (str(v[0]), float(v[1])) for k, v in self.per_column.items()}
        )
        return to_core(drift.DriftConfig, self, base, per_column=per_column)


def _report_link(report: Path, folder: Path) -> dict[str, dg.MetadataValue]:
    """``report_url``: the report in a browser (served by `make ui`), when links are on."""
    url = report_files.url_for(report, folder)
    return {"report_url": dg.MetadataValue.url(url)} if url else {}


def _scores_table(result: drift.BehaviourDrift) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "feature": list(result.scores),
            "effect_size": list(result.scores.values()),
            "threshold": [result.thresholds[c] for c in result.scores],
            "drifted": [c in result.drifted for c in result.scores],
        },
        schema={"feature": pl.String, "effect_size": pl.Float64, "threshold": pl.Float64,
                "drifted": pl.Boolean},
    ).sort("effect_size", descending=True)  # fmt: skip


@dg.asset(
    group_name="monitoring",
    kinds={"evidently", "duckdb"},
    deps=[SEGMENTS],
    pool=DUCKDB_POOL,
    check_specs=checks.specs("behaviour_drift", "behaviour_drift_below_trigger"),
)
def behaviour_drift(
    config: DriftMonitorConfig, warehouse: WarehouseResource, reports: ReportsResource
) -> dg.MaterializeResult:
    """An Evidently report on the features the champion was fitted on: today's
    ``customer_features`` vs the champion's reference snapshot, per feature the effect size and
    whether it crossed its calibrated threshold. The features describe behaviour *now* (a
    customer who changed is described by the new behaviour within days), so this is what a
    refit or the daily assignment can act on. The drift score (largest effect / its threshold,
    see ``core.drift``) is what the drift sensor's policy reads. Features that move on a quiet
    shop (tenure, and what accumulates with history: ``core.drift.NOT_MONITORED``) are left
    out."""
    project_settings = project.load()
    settings = config.drift_config(project_settings.drift)
    size, seed = settings.sample_size, settings.seed
    features = segments.FEATURES_TABLE
    with warehouse.connect() as con:
        version, model = registry.require_champion(con)
        ref = [str(registry.reference_path(con, version))]
        # fixed-size samples read in SQL: the step's cost does not grow with the customers
        reference = drift.read_sample(con, "read_parquet(?)", ref, size, seed)
        current = drift.read_sample(con, features, [], size, seed + 1)
        ref_snapshot = one(con, "select max(snapshot_date) from read_parquet(?)", ref)[0]
        snapshot, n_current = one(con, f"select max(snapshot_date), count(*) from {features}")
    columns = drift.comparable_columns(reference, drift.monitored_columns(model.plan.used))
    report = Path(reports.dir) / f"behaviour_drift_{snapshot}_ref{version:04d}.html"
    result = drift.behaviour_drift(reference, current, columns, settings, report)
    report_files.prune(
        Path(reports.dir), report_files.drift_pattern(), report_files.keep_from_env()
    )
    with warehouse.connect() as con:
        append_history(
            con,
            snapshot,
            version,
            "behaviour_drift",
            result.score,
            {"share": result.drift_share, "scores": result.scores,
             "thresholds": result.thresholds, "drifted": result.drifted},
        )  # fmt: skip
    return dg.MaterializeResult(
        metadata={
            "snapshot_date": str(snapshot),
            "reference_version": version,
            "reference_snapshot": str(ref_snapshot),
            "drift_score": result.score,
            "drift_share": result.drift_share,
            "drifted_columns": ", ".join(result.drifted) or "none",
            "n_current": n_current,
            "n_sampled": result.n_current,
            "scores": table(_scores_table(result)),
            "report": dg.MetadataValue.path(str(result.report_path)),
            **_report_link(report, Path(reports.dir)),
        },
        check_results=[checks.result(health.drift(result.score, project_settings.policy))],
    )


@dg.asset(
    group_name="monitoring",
    kinds={"duckdb"},
    deps=[SEGMENTS],
    pool=DUCKDB_POOL,
    check_specs=checks.specs("segment_share_drift", "segment_shares_stable"),
)
def segment_share_drift(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """PSI of today's segment shares vs the shares on the champion's reference snapshot
    (rule of thumb: < 0.1 stable, 0.1-0.25 moderate, > 0.25 a real shift)."""
    with warehouse.connect() as con:
        version, model = registry.require_champion(con)
        # today's shares come from customer_segments; only the date is needed from the features
        snapshot = one(con, f"select max(snapshot_date) from {segments.FEATURES_TABLE}")[0]
        at_fit = registry.reference_shares(con, version, model)
        today = drift.shares(segments.published_members(con)["segment_id"].to_numpy())
        score = drift.psi(at_fit, today)
        append_history(con, snapshot, version, "segment_share_psi", score,
                        {"at_fit": at_fit, "today": today})  # fmt: skip
    rows = pl.DataFrame(
        {
            "segment_id": sorted(set(at_fit) | set(today)),
        }
    ).with_columns(
        share_at_fit=pl.col("segment_id").replace_strict(at_fit, default=0.0),
        share_today=pl.col("segment_id").replace_strict(today, default=0.0),
    )
    return dg.MaterializeResult(
        metadata={
            "snapshot_date": str(snapshot),
            "reference_version": version,
            "psi": score,
            "shares": table(rows),
        },
        check_results=[checks.result(health.share_drift(score, health.HealthConfig()))],
    )


@dg.asset(
    group_name="monitoring",
    kinds={"sklearn"},
    deps=[SEGMENTS],
    pool=DUCKDB_POOL,
    check_specs=checks.specs("model_quality", "model_still_fits"),
)
def model_quality(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Does the champion still fit? Silhouette and mean distance to the assigned centroid on
    today's customers vs on its reference snapshot (same sample size and seed)."""
    features = segments.FEATURES_TABLE
    with warehouse.connect() as con:
        version, model = registry.require_champion(con)
        ref = [str(registry.reference_path(con, version))]
        # fixed-size samples read in SQL (the same seed on both sides, as before)
        size = drift.QUALITY_SAMPLE
        reference = drift.read_sample(con, "read_parquet(?)", ref, size, 1)
        current = drift.read_sample(con, features, [], size, 1)
        q = drift.model_quality(model, reference, current)
        snapshot = one(con, f"select max(snapshot_date) from {features}")[0]
        append_history(con, snapshot, version, "distance_ratio", q.distance_ratio,
                        q.__dict__)  # fmt: skip
    return dg.MaterializeResult(
        metadata={
            "snapshot_date": str(snapshot),
            "reference_version": version,
            "silhouette_now": q.silhouette_now,
            "silhouette_at_fit": q.silhouette_at_fit,
            "mean_distance_now": q.mean_distance_now,
            "mean_distance_at_fit": q.mean_distance_at_fit,
            "distance_ratio": q.distance_ratio,
        },
        check_results=[checks.result(health.model_fit(q.distance_ratio, health.HealthConfig()))],
    )
