"""Replay: day-by-day operation over a simulated period, through Dagster.

The demo generator writes the whole scenario into ``<data>/replay_source/`` (never read by the
pipeline). The replay then behaves like production would:

1. deliver the first ``history_days`` day files (plus customers and products) into the landing
   folder and run ``segmentation_job``: the first champion, fitted on a full feature window;
2. for every later day: deliver that day's file and :func:`operate`: a tick of
   ``daily_refresh_schedule`` running ``daily_refresh_job`` (ingest, dbt, gates, assign with
   the champion, profiles, migrations, export, monitors), one tick of ``drift_sensor``, and the
   ``resegmentation_job`` it requests, if any.

:func:`operate` is also ``segmentation daily``: the same day of operation on your own files,
whatever your systems landed since the last one.

Each day appends one row to ``monitoring.replay_timeline``. The ticks, the sensor's cursor and
the runs' "launched by" are written to the Dagster instance where the daemon writes them
(adapters.automation), so ``make ui`` shows every automatic decision afterwards and its
daemon continues from the same cursor. Re-running continues where the last replay stopped (a
finished replay adds nothing). Delivered files are copied, so the source is never modified.

Wiring only: the science (features, fit, drift, policy) lives in dbt and ``core``.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl

from segmentation_dagster.adapters import automation
from segmentation_dagster.core import registry
from segmentation_dagster.core.settings import Paths
from segmentation_dagster.core.warehouse import connect, one
from segmentation_dagster.defs.automation.schedules import daily_refresh_schedule
from segmentation_dagster.defs.automation.sensors import drift_sensor
from segmentation_dagster.demo import simulate
from segmentation_dagster.demo.evaluate import evaluate_segments
from segmentation_dagster.demo.simulate import ReplayConfig
from segmentation_dagster.runs import execute

TIMELINE = "monitoring.replay_timeline"


class ReplayError(RuntimeError):
    """The replay cannot run on this data folder (and nothing was changed), or a run failed
    (``run_id``)."""

    def __init__(self, message: str, run_id: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id


@dataclass(frozen=True)
class Day:
    """One row of the timeline."""

    snapshot_date: dt.date
    runs: str
    drift_score: float | None
    segment_psi: float | None
    distance_ratio: float | None
    decision: str
    champion_version: int | None
    unchanged_share: float | None
    ari: float | None  # segments vs the true personas of that day (demo data only)
    seconds: float


def _deliver(src: Path, dst: Path) -> None:
    """Copy a file into the landing folder atomically (a reader never sees half a file)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(dst)


def _source(paths: Paths, cfg: ReplayConfig) -> Path:
    source = paths.data_dir / "replay_source"
    if not (source / "events").exists():
        simulate.generate(cfg.demo(), source, paths.truth_dir)
    return source


def _check_landing(paths: Paths, source: Path) -> list[Path]:
    """Source day files not delivered yet; refuses a landing folder with foreign files."""
    days = sorted((source / "events").iterdir())
    landed = {p.name for p in (paths.landing_dir / "events").glob("*") if p.is_file()}
    foreign = landed - {p.name for p in days}
    if foreign:
        raise ReplayError(
            f"{paths.landing_dir / 'events'} holds {len(foreign)} file(s) the replay did not "
            f"deliver (e.g. {sorted(foreign)[0]}); replay into an empty data folder "
            "(SEGMENTATION_DATA_DIR=...)"
        )
    return [p for p in days if p.name not in landed]


def _ensure_tables(con) -> None:  # noqa: ANN001
    con.execute("create schema if not exists monitoring")
    con.execute(
        f"create table if not exists {TIMELINE} (snapshot_date date, runs varchar, "
        "drift_score double, segment_psi double, distance_ratio double, decision varchar, "
        "champion_version integer, unchanged_share double, ari double, seconds double)"
    )


def latest_metadata(instance: dg.DagsterInstance, asset: str) -> dict[str, object]:
    """The metadata of ``asset``'s latest materialisation ({} when it has none)."""
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=1).records
    if not records:
        return {}
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def _run(
    defs: dg.Definitions,
    job: str,
    instance: dg.DagsterInstance,
    tags: dict[str, str] | None = None,
) -> str:
    # quiet: warnings only, and dbt's log (echoed by the dbt step) kept off the timeline
    run = execute(defs, job, instance, tags=tags, log_level="WARNING", capture_stdout=True)
    if not run.success:
        raise ReplayError(f"{job} run {run.run_id} failed: {run.failure_summary()}", run.run_id)
    return run.run_id


def _refresh(
    defs: dg.Definitions, instance: dg.DagsterInstance, tags: dict[str, str], scheduled: bool
) -> None:
    """``daily_refresh_job``; in the replay as ``daily_refresh_schedule``'s tick and run."""
    if not scheduled:
        _run(defs, "daily_refresh_job", instance, tags)
        return
    schedule = automation.schedule(daily_refresh_schedule)
    tick = automation.start_tick(instance, schedule)
    try:
        run_id = _run(defs, "daily_refresh_job", instance,
                      {**tags, **automation.run_tags(schedule, tick)})  # fmt: skip
    except ReplayError as e:
        automation.finish_tick(instance, schedule, tick, automation.FAILURE, error=str(e))
        raise
    automation.finish_tick(instance, schedule, tick, automation.SUCCESS, run_id=run_id)


def _evaluate_sensor(
    defs: dg.Definitions, instance: dg.DagsterInstance, tags: dict[str, str]
) -> str:
    """One tick of ``drift_sensor``, recorded where the daemon records its ticks (same cursor,
    same run-key rule), and the ``resegmentation_job`` it requests; returns the decision."""
    sensor = automation.sensor(drift_sensor)
    if not automation.is_running(instance, sensor, default_running=True):
        return "drift_sensor is stopped (start it in the UI): not evaluated"
    tick = automation.start_tick(instance, sensor)
    ctx = dg.build_sensor_context(
        instance=instance, cursor=automation.cursor(instance, sensor), definitions=defs
    )
    try:
        result = drift_sensor(ctx)
    except Exception as e:
        automation.finish_tick(instance, sensor, tick, automation.FAILURE, error=str(e))
        raise
    key = result.run_key or "" if isinstance(result, dg.RunRequest) else ""
    if not isinstance(result, dg.RunRequest) or automation.requested_before(instance, sensor, key):
        reason = getattr(result, "skip_message", None) or f"run key {key} already requested"
        automation.finish_tick(instance, sensor, tick, automation.SKIPPED,
                               skip_reason=reason, new_cursor=ctx.cursor)  # fmt: skip
        return reason
    run_id, run_tags = None, {**tags, **result.tags, **automation.run_tags(sensor, tick, key)}
    try:
        run_id = _run(defs, "resegmentation_job", instance, run_tags)
    except ReplayError as e:  # the run was launched (the tick succeeded) but failed
        run_id = e.run_id
        raise
    finally:
        automation.finish_tick(instance, sensor, tick, automation.SUCCESS,
                               run_id=run_id, run_key=key, new_cursor=ctx.cursor)  # fmt: skip
    reason = result.tags.get("segmentation/reason", "")
    return f"RE-SEGMENT ({reason})"


def replay(
    paths: Paths,
    cfg: ReplayConfig,
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    on_day: Callable[[Day], None] = lambda day: None,
) -> list[Day]:
    """Run (or continue) the replay; returns the whole timeline so far."""
    source = _source(paths, cfg)
    todo = _check_landing(paths, source)
    if todo and not (paths.landing_dir / "events").exists():
        for kind in ("customers", "products"):
            for f in (source / kind).iterdir():
                _deliver(f, paths.landing_dir / kind / f.name)
        t0 = time.perf_counter()
        for f in todo[: cfg.history_days]:
            _deliver(f, paths.landing_dir / "events" / f.name)
        operate(paths, instance, defs, on_day, t0, {"segmentation/replay": "initial"})
        todo = todo[cfg.history_days :]
    for f in todo:
        t0 = time.perf_counter()
        _deliver(f, paths.landing_dir / "events" / f.name)
        operate(paths, instance, defs, on_day, t0, {"segmentation/replay": "daily"}, True)
    with connect(paths.duckdb_path) as con:
        rows = con.sql(f"select * from {TIMELINE} order by snapshot_date").fetchall()
    return [Day(*r) for r in rows]


def operate(
    paths: Paths,
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    on_day: Callable[[Day], None] = lambda day: None,
    t0: float | None = None,
    tags: dict[str, str] | None = None,
    scheduled: bool = False,
) -> None:
    """One day of operation on whatever is in the landing folder: the first champion
    (``segmentation_job``) when there is none yet, otherwise ``daily_refresh_job`` (recorded as
    ``daily_refresh_schedule``'s tick when ``scheduled``), one tick of ``drift_sensor`` and the
    ``resegmentation_job`` it requests, if any. Appends the day to the timeline."""
    t0 = time.perf_counter() if t0 is None else t0
    tags = tags or {}
    if not automation.keeps_record(instance):
        raise ReplayError(
            "this Dagster instance keeps no sensor state (an ephemeral instance): the drift "
            "sensor's history would be lost; use an instance with storage (DAGSTER_HOME)"
        )
    with connect(paths.duckdb_path) as con:
        _ensure_tables(con)
        has_champion = registry.champion(con) is not None
    if not has_champion:
        _run(defs, "segmentation_job", instance, tags)
        _record(paths, _monitors(instance), "segmentation_job", "first champion", t0, on_day)
        return
    _refresh(defs, instance, tags, scheduled)
    monitors = _monitors(instance)  # what the sensor judged, before any refit resets them
    decision = _evaluate_sensor(defs, instance, tags)
    runs = "daily_refresh_job"
    if decision.startswith("RE-SEGMENT"):
        runs += " + resegmentation_job"
        decision += f" -> {_last_model_decision(paths)}"
    _record(paths, monitors, runs, decision, t0, on_day)


def _last_model_decision(paths: Paths) -> str:
    with connect(paths.duckdb_path) as con:
        return registry.last_decision(con)


def _monitors(instance: dg.DagsterInstance) -> dict[str, dict[str, object]]:
    return {
        a: latest_metadata(instance, a)
        for a in ("behaviour_drift", "segment_share_drift", "model_quality", "segment_migrations")
    }


def _record(
    paths: Paths,
    monitors: dict[str, dict[str, object]],
    runs: str,
    decision: str,
    t0: float,
    on_day: Callable[[Day], None],
) -> None:
    drift = monitors["behaviour_drift"]
    with connect(paths.duckdb_path) as con:
        _ensure_tables(con)
        champion = one(
            con, "select version from segmentation.model_registry where status = 'champion'"
        )
        segments = con.sql(
            "select customer_id, segment_id from segmentation.customer_segments"
        ).pl()
        snapshot = dt.date.fromisoformat(str(drift["snapshot_date"]))
        truth = paths.truth_dir / "personas.parquet"
        ari = evaluate_segments(segments, truth, snapshot).ari if truth.exists() else None
        day = Day(
            snapshot_date=snapshot,
            runs=runs,
            drift_score=_num(drift.get("drift_score")),
            segment_psi=_num(monitors["segment_share_drift"].get("psi")),
            distance_ratio=_num(monitors["model_quality"].get("distance_ratio")),
            decision=decision,
            champion_version=champion[0] if champion else None,
            unchanged_share=_num(monitors["segment_migrations"].get("unchanged_share")),
            ari=ari,
            seconds=round(time.perf_counter() - t0, 1),
        )
        con.execute(f"delete from {TIMELINE} where snapshot_date = ?", [day.snapshot_date])
        con.execute(
            f"insert into {TIMELINE} values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            list(day.__dict__.values()),
        )
    on_day(day)


def _num(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def format_day(day: Day) -> str:
    """One timeline line for the console."""

    def f(v: float | None, spec: str = ".2f") -> str:
        return "   -" if v is None else format(v, spec)

    return (
        f"{day.snapshot_date}  drift {f(day.drift_score)}  psi {f(day.segment_psi, '.3f')}  "
        f"dist x{f(day.distance_ratio)}  same-id {f(day.unchanged_share, '.1%'):>6}  "
        f"ARI {f(day.ari)}  v{day.champion_version}  {day.seconds:5.1f}s  {day.decision}"
    )


def timeline_frame(days: list[Day]) -> pl.DataFrame:
    return pl.DataFrame([d.__dict__ for d in days])
