"""Schedules: the daily refresh (on by default) and a periodic retrain (off by default).

On the Spark engine (SEGMENTATION_ENGINE=spark) the daily refresh is off by default and
``spark_daily_schedule`` runs the Spark job at the same time.

Cadences come from the project file's ``schedules`` section (core.project; default 06:00
daily and Mondays 03:00), or SEGMENTATION_REFRESH_CRON / SEGMENTATION_RETRAIN_CRON when set;
they are read when the code location loads. Start or stop the schedules in the UI.
"""

import os

import dagster as dg

from segmentation_dagster.core import project, settings
from segmentation_dagster.defs.jobs import daily_refresh_job, resegmentation_job

try:
    _SCHEDULES = project.load().schedules
except project.ProjectConfigError:  # the runs report it, naming the file and key; the code
    _SCHEDULES = project.Schedules()  # location (sensor, jobs, UI) stays up

daily_refresh_schedule = dg.ScheduleDefinition(
    name="daily_refresh_schedule",
    job=daily_refresh_job,
    cron_schedule=os.environ.get("SEGMENTATION_REFRESH_CRON") or _SCHEDULES.refresh_cron,
    # on the Spark engine its own schedule runs at this time instead (defs/spark)
    default_status=dg.DefaultScheduleStatus.RUNNING
    if settings.engine() == "duckdb"
    else dg.DefaultScheduleStatus.STOPPED,
)

retrain_schedule = dg.ScheduleDefinition(
    name="retrain_schedule",
    job=resegmentation_job,
    cron_schedule=os.environ.get("SEGMENTATION_RETRAIN_CRON") or _SCHEDULES.retrain_cron,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    tags={"segmentation/trigger": "schedule"},
)
