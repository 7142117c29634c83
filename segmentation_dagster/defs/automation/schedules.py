"""Schedules: the daily refresh (on by default) and a periodic retrain (off by default).

Cadences come from SEGMENTATION_REFRESH_CRON (default 06:00 daily) and
SEGMENTATION_RETRAIN_CRON (default Mondays 03:00); start or stop them in the UI.
"""

import os

import dagster as dg

from segmentation_dagster.defs.jobs import daily_refresh_job, resegmentation_job

daily_refresh_schedule = dg.ScheduleDefinition(
    name="daily_refresh_schedule",
    job=daily_refresh_job,
    cron_schedule=os.environ.get("SEGMENTATION_REFRESH_CRON", "0 6 * * *"),
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

retrain_schedule = dg.ScheduleDefinition(
    name="retrain_schedule",
    job=resegmentation_job,
    cron_schedule=os.environ.get("SEGMENTATION_RETRAIN_CRON", "0 3 * * 1"),
    default_status=dg.DefaultScheduleStatus.STOPPED,
    tags={"segmentation/trigger": "schedule"},
)
