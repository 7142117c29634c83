"""The Spark engine (``SEGMENTATION_ENGINE=spark``): the landed files are loaded as on DuckDB
(same rules, quarantine, manifest and raw-table checks), then ``spark_segments`` exports the raw
tables as Parquet and runs the whole loop on Spark (core.spark_loop): dbt build on the
``spark`` target, quality gate and re-segmentation on a fixed-size sample, every customer
assigned, profiled and recorded inside Spark. ``spark_segmentation_job`` runs both. Nothing
here exists with the default engine (duckdb)."""

import dagster as dg

from segmentation_dagster.core import lifecycle, privacy, project, registry, settings
from segmentation_dagster.defs.automation.schedules import daily_refresh_schedule, schedule
from segmentation_dagster.defs.config import AssignmentConfig, SegmentationConfig
from segmentation_dagster.defs.metadata import table
from segmentation_dagster.defs.resources import (
    DUCKDB_POOL,
    ExportResource,
    ModelStoreResource,
    ReportsResource,
    WarehouseResource,
)


class SparkSegmentsConfig(dg.Config):
    """The run's selection and lifecycle (as ``segmentation_model``), the assignment (as
    ``customer_segments``), and the size of the sample the fit, the gate and drift work on."""

    segmentation: SegmentationConfig = SegmentationConfig()
    assignment: AssignmentConfig = AssignmentConfig()
    sample_rows: int = 200_000


@dg.asset(
    name="spark_segments",
    group_name="spark",
    kinds={"spark", "sklearn"},
    deps=[dg.AssetKey(f"raw_{kind}") for kind in ("events", "customers", "products")],
    pool=DUCKDB_POOL,
)
def _spark_segments(
    context: dg.AssetExecutionContext,
    config: SparkSegmentsConfig,
    warehouse: WarehouseResource,
    model_store: ModelStoreResource,
    reports: ReportsResource,
    exports: ExportResource,
) -> dg.MaterializeResult:
    """customer_features, the re-segmentation and every customer's segment, on Spark: the raw
    tables go to Parquet, dbt builds the features on the ``spark`` target, the model is fitted
    and gated on a fixed-size sample and recorded in the registry, and customer_segments, its
    history and the migrations from the assignment before are written inside Spark, and the
    membership is exported (pseudonymised as on DuckDB) to the exports folder. Sizes and
    profiles of segments smaller than privacy.min_group_size are suppressed here as
    everywhere."""
    from segmentation_dagster.core import spark as engine
    from segmentation_dagster.core import spark_loop

    why_not = engine.available()
    if why_not:
        raise dg.Failure(f"SEGMENTATION_ENGINE=spark, but {why_not}")
    cfg = project.load()
    selection = config.segmentation.selection(cfg.selection)
    life = config.segmentation.lifecycle(cfg.lifecycle, selection)
    folder = settings.spark_dir()
    spark = engine.configured_session()
    raw_ids = cfg.privacy.export_ids == "raw"
    secret = None if raw_ids else privacy.key(settings.Paths.from_env().data_dir)
    with warehouse.connect() as con:  # the registry's writer for the whole run
        engine.export_raw(con, folder / "raw")
        result = spark_loop.run(
            spark, con, folder / "raw", model_store.dir, folder,
            selection=selection, life=life,
            assignment=config.assignment.assignment(cfg.assignment),
            sample_rows=config.sample_rows, seed=selection.seed, report_dir=reports.dir,
            export_dir=exports.dir, export_secret=secret,
        )  # fmt: skip
        labels = registry.labels(con)
    decision = result.outcome.result.decision
    context.log.info(f"model v{result.outcome.version}: {decision.reason}")
    small = privacy.small_segments(result.sizes, cfg.privacy.min_group_size)
    profiles = privacy.suppress(
        result.profiles.select("segment_id", "size", "share", "description"),
        small, ["size", "share", "description"],
    )  # fmt: skip
    failed = [o for o in result.quality if not o.success]
    moved = result.migrations
    migrations = {
        "migrations_from": f"{moved.previous[0]} v{moved.previous[1]}"
        if moved.previous
        else "nothing (first assignment)",
        "migrations_to": f"{moved.current[0]} v{moved.current[1]}",
        "unchanged_share": moved.unchanged_share,
        "migrations": table(
            lifecycle.migration_pivot(moved.matrix, labels, cfg.privacy.min_group_size)
        ),
    } if moved else {}  # fmt: skip
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": result.customers,
            "engine": "spark",
            "model_version": result.outcome.version,
            "champion_version": result.champion_version,
            "promoted": decision.promote,
            "decision": decision.reason,
            "sample_rows": result.sample_rows,
            "profiles": table(profiles),
            # the recommended action per segment, with the features that chose it
            "playbooks": table(
                privacy.suppress(result.playbooks, small, ["evidence", "recommended"]).select(
                    "segment_id", "playbook", "action", "evidence", "recommended"
                )
            ),
            **migrations,
            **(
                {
                    "full_list": dg.MetadataValue.path(str(result.export.full)),
                    "changes": dg.MetadataValue.path(str(result.export.changes)),
                    "joined": result.export.joined,
                    "left": result.export.left,
                }
                if result.export
                else {}
            ),
            "quality_warnings": dg.MetadataValue.json(
                [f"{o.expectation.type} {o.expectation.kwargs}" for o in failed]
            ),
            "behaviour_drift_score": result.drift.score,
            "drift_report": dg.MetadataValue.path(str(result.drift.report_path)),
            "seconds": dg.MetadataValue.json(result.timings),
            "spark_tables": dg.MetadataValue.json(
                [f"{spark_loop.schema()}.{t}" for t in spark_loop.TABLES]
            ),
        }
    )


_spark_segmentation_job = dg.define_asset_job(
    name="spark_segmentation_job",
    selection=dg.AssetSelection.groups("ingestion") - dg.AssetSelection.assets("landing_file")
    | dg.AssetSelection.assets("spark_segments"),
    description="Load the landed files (as on DuckDB), then the whole segmentation loop on "
    "Spark: Parquet raw tables, dbt features, gate and fit on a sample, assignment, profiles "
    "and history inside Spark.",
)


@dg.definitions
def spark_engine() -> dg.Definitions:
    """The asset and its job when ``SEGMENTATION_ENGINE=spark``; nothing otherwise."""
    if settings.engine() != "spark":
        return dg.Definitions()
    # the Spark settings are checked here, before any run loads files it cannot finish
    # (the settings' own checks: core.spark_loop would import scikit-learn at load time)
    from segmentation_dagster.core import spark as engine

    settings.spark_schema()
    engine.metastore_folder(settings.spark_dir() / "metastore")
    engine.export_folder(settings.Paths.from_env().export_dir)
    engine.driver_memory()
    daily = schedule(  # a broken configuration: skips with the error, as the others do
        "spark_daily_schedule",
        _spark_segmentation_job,
        daily_refresh_schedule.cron_schedule,
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    return dg.Definitions(
        assets=[_spark_segments], jobs=[_spark_segmentation_job], schedules=[daily]
    )
