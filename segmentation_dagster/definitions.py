"""The Definitions object (and nothing else)."""

import dagster as dg

from segmentation_dagster.defs import jobs
from segmentation_dagster.defs.automation.schedules import daily_refresh_schedule, retrain_schedule
from segmentation_dagster.defs.automation.sensors import drift_sensor
from segmentation_dagster.defs.ingestion import assets as ingestion_assets
from segmentation_dagster.defs.monitoring import assets as monitoring_assets
from segmentation_dagster.defs.quality.checks import gx_checks
from segmentation_dagster.defs.segmentation import assets as segmentation_assets
from segmentation_dagster.defs.transform import assets as transform_assets
from segmentation_dagster.resources import default_resources

defs = dg.Definitions(
    assets=dg.load_assets_from_modules(
        [ingestion_assets, transform_assets, segmentation_assets, monitoring_assets]
    ),
    asset_checks=gx_checks,
    jobs=[jobs.segmentation_job, jobs.daily_refresh_job, jobs.resegmentation_job],
    sensors=[drift_sensor],
    schedules=[daily_refresh_schedule, retrain_schedule],
    resources={**default_resources(), "dbt": transform_assets.dbt_resource()},
    # Steps run one after another in the run's own process: DuckDB takes one writer at a time,
    # and on 2 cores a process per step costs ~3 s each for nothing.
    executor=dg.in_process_executor,
)
