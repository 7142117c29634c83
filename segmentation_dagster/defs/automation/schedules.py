"""Schedules: the daily refresh (on by default) and a periodic retrain (off by default).

On the Spark engine (SEGMENTATION_ENGINE=spark) the daily refresh is off by default and
``spark_daily_schedule`` runs the Spark job at the same time.

Cadences come from the project file's ``schedules`` section (core.project; default 06:00
daily and Mondays 03:00), or SEGMENTATION_REFRESH_CRON / SEGMENTATION_RETRAIN_CRON when set
(read and checked there, with the file); they are read when the code location loads. Start
or stop the schedules in the UI.

A configuration error does not take the code location down (the sensor, the jobs and the UI
stay up): it is logged as a warning when the location loads (``dg check defs``, ``dagster
dev``), each schedule's description shows it, and every tick is skipped with it as the reason
(the UI's tick history), so nothing runs at a cadence nobody asked for.
"""

import logging

import dagster as dg

from segmentation_dagster.core import project, settings
from segmentation_dagster.defs.jobs import daily_refresh_job, resegmentation_job

_log = logging.getLogger(__name__)


def _load() -> tuple[project.Schedules, str | None]:
    try:
        return project.load().schedules, None
    except project.ProjectConfigError as e:
        return project.Schedules(), str(e)


_SCHEDULES, CONFIG_ERROR = _load()
if CONFIG_ERROR is not None:
    _log.warning("configuration error, every schedule skips its ticks: %s", CONFIG_ERROR)


def _skip(_context: dg.ScheduleEvaluationContext) -> dg.SkipReason:
    return dg.SkipReason(f"configuration error, nothing launched: {CONFIG_ERROR}")


def schedule(
    name: str, job: dg.JobDefinition, cron: str, **kwargs: object
) -> dg.ScheduleDefinition:
    """A schedule of ``job``; while the configuration is broken, one that skips every tick
    with the error as its reason (and shows it as its description)."""
    if CONFIG_ERROR is None:
        return dg.ScheduleDefinition(name=name, job=job, cron_schedule=cron, **kwargs)  # type: ignore[arg-type]
    return dg.ScheduleDefinition(
        name=name,
        job=job,
        cron_schedule=cron,
        execution_fn=_skip,
        description=f"Skipping every tick: configuration error: {CONFIG_ERROR}",
        **kwargs,  # type: ignore[arg-type]
    )


daily_refresh_schedule = schedule(
    "daily_refresh_schedule",
    daily_refresh_job,
    _SCHEDULES.refresh_cron,
    # on the Spark engine its own schedule runs at this time instead (defs/spark)
    default_status=dg.DefaultScheduleStatus.RUNNING
    if settings.engine() == "duckdb"
    else dg.DefaultScheduleStatus.STOPPED,
)

retrain_schedule = schedule(
    "retrain_schedule",
    resegmentation_job,
    _SCHEDULES.retrain_cron,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    tags={"segmentation/trigger": "schedule"},
)
