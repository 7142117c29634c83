"""End-to-end replay through Dagster on small data: a behaviour shift gets a re-segmentation,
quiet days do not (real DuckDB, dbt, GX, Evidently, sensor)."""

import dagster as dg
import pytest
from dagster._core.scheduler.instigation import InstigatorStatus, TickStatus

from segmentation_dagster import replay
from segmentation_dagster.adapters import automation
from segmentation_dagster.core.policy import PolicyConfig
from segmentation_dagster.core.warehouse import connect, one
from segmentation_dagster.defs.automation.schedules import daily_refresh_schedule
from segmentation_dagster.defs.automation.sensors import drift_sensor
from segmentation_dagster.demo import simulate
from tests.conftest import defs_for

pytestmark = pytest.mark.slow  # day-by-day replays through every job

#: A month of history: on a younger shop the features are still warming up (evidence and
#: order gaps accumulating), which the monitor rightly sees as movement.
HISTORY = 30


def _replay(paths, scenario: str, days: int, instance=None) -> list[replay.Day]:
    cfg = simulate.ReplayConfig(
        scenario=scenario, n_customers=1_200, history_days=HISTORY, days=days, shift_after=1,
        seed=5,
    )  # fmt: skip
    if instance is not None:
        return replay.replay(paths, cfg, instance, defs_for(paths))
    with dg.instance_for_test() as instance:
        return replay.replay(paths, cfg, instance, defs_for(paths))


def _ticks(instance, definition):
    """The ticks the UI shows for a sensor/schedule, oldest first."""
    inst = (
        automation.sensor(definition)
        if isinstance(definition, dg.SensorDefinition)
        else automation.schedule(definition)
    )
    return inst, instance.get_ticks(inst.origin_id, inst.selector_id)[::-1]


@pytest.fixture
def fast_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    # the default 7-day cooldown would need a week of replay before any trigger
    monkeypatch.setenv("SEGMENTATION_DRIFT_POLICY", '{"cooldown_days": 1}')


def test_a_shift_triggers_a_resegmentation_whose_decision_is_on_record(paths, fast_policy):
    with dg.instance_for_test() as instance:
        days = _replay(paths, "price_wave", days=5, instance=instance)
        sensor, sensor_ticks = _ticks(instance, drift_sensor)
        cursor = automation.cursor(instance, sensor)
        _schedule, schedule_ticks = _ticks(instance, daily_refresh_schedule)
        by_sensor = instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": "drift_sensor"}))
        by_schedule = instance.get_runs(
            dg.RunsFilter(tags={"dagster/schedule_name": "daily_refresh_schedule"})
        )
    triggered = [d for d in days if "resegmentation_job" in d.runs]
    assert triggered and triggered[0].snapshot_date >= days[2].snapshot_date, [
        replay.format_day(d) for d in days
    ]  # the shift is on the second day: nothing before it, k=2 of n=3 checks after it
    assert all(d.decision.startswith("RE-SEGMENT") == (d in triggered) for d in days[1:])
    # one automation record: every daily check is a tick of the UI's sensor and schedule,
    # skipped with the policy's reason or naming the run it launched
    daily = days[1:]
    assert len(sensor_ticks) == len(schedule_ticks) == len(daily)
    for day, tick in zip(daily, sensor_ticks, strict=True):
        if day in triggered:
            assert tick.status == TickStatus.SUCCESS and len(tick.run_ids) == 1
        else:
            assert tick.status == TickStatus.SKIPPED and tick.skip_reason == day.decision
    assert {r.run_id for r in by_sensor} == {t.run_ids[0] for t in sensor_ticks if t.run_ids}
    assert {r.job_name for r in by_sensor} == {"resegmentation_job"}
    assert [r.run_id for r in by_schedule][::-1] == [t.run_ids[0] for t in schedule_ticks]
    assert sensor_ticks[-1].cursor == cursor is not None  # where the daemon continues
    with connect(paths.duckdb_path) as con:
        assert one(con, "select count(*) from monitoring.replay_timeline")[0] == len(days) == 6
        # every challenger was fitted and judged: promoted or kept, the decision is on record
        decisions = one(con, "select count(*) from segmentation.model_decisions")[0]
        transitions = one(con, "select count(*) from segmentation.segment_transitions")[0]
        champion = one(
            con, "select version from segmentation.model_registry where status = 'champion'"
        )[0]
        ref = one(
            con,
            "select reference_version from monitoring.drift_history "
            "order by checked_at desc limit 1",
        )[0]
    assert decisions == 1 + len(triggered) and transitions > 0
    assert triggered[0].decision.split("-> ")[1] != ""
    # monitors always compare with the champion's reference: reset only by a promotion
    assert ref == champion == days[-1].champion_version


def test_quiet_days_do_not_trigger_and_a_rerun_adds_nothing(paths, fast_policy):
    days = _replay(paths, "none", days=2)
    assert not [d for d in days if "resegmentation_job" in d.runs]
    assert max(d.drift_score for d in days) < PolicyConfig().enter_threshold
    assert {d.champion_version for d in days} == {1}
    again = _replay(paths, "none", days=2)
    assert again == days


def test_replay_refuses_a_landing_folder_it_did_not_fill(paths):
    (paths.landing_dir / "events").mkdir(parents=True)
    (paths.landing_dir / "events" / "orders_2026.csv").write_text("customer_id\n1\n")
    with pytest.raises(replay.ReplayError, match="orders_2026.csv"):
        _replay(paths, "none", days=1)
    assert (paths.landing_dir / "events" / "orders_2026.csv").exists()


def test_daily_operation_on_your_own_files_uses_the_same_jobs_and_sensor(paths, tmp_path):
    """`segmentation daily` (replay.operate) on files nobody delivered through the replay:
    a purchases-only CSV log with no truth. The first call fits the first champion, a later
    one refreshes, asks the UI's sensor (its tick and cursor in the instance) and records the
    day; a sensor switched off in the UI is not evaluated."""
    cfg = simulate.DemoConfig(n_customers=800, days=32, seed=3, purchases_only=True,
                              file_format="csv")  # fmt: skip
    source = tmp_path / "source"
    simulate.generate(cfg, source, tmp_path / "truth_elsewhere")
    files = sorted((source / "events").iterdir())
    (paths.landing_dir / "events").mkdir(parents=True)
    for f in files[:-1]:
        (paths.landing_dir / "events" / f.name).write_bytes(f.read_bytes())
    days: list[replay.Day] = []
    with dg.instance_for_test() as instance:
        defs = defs_for(paths)
        replay.operate(paths, instance, defs, days.append)
        (paths.landing_dir / "events" / files[-1].name).write_bytes(files[-1].read_bytes())
        replay.operate(paths, instance, defs, days.append)
        sensor, ticks = _ticks(instance, drift_sensor)
        assert [t.skip_reason for t in ticks] == [days[1].decision]
        assert automation.cursor(instance, sensor) == ticks[0].cursor is not None
        assert _ticks(instance, daily_refresh_schedule)[1] == []  # a command, not the schedule
        state = instance.get_instigator_state(sensor.origin_id, sensor.selector_id)
        instance.update_instigator_state(state.with_status(InstigatorStatus.STOPPED))
        replay.operate(paths, instance, defs, days.append)
        assert len(_ticks(instance, drift_sensor)[1]) == 1
    assert days[2].decision.startswith("drift_sensor is stopped")
    days = days[:2]
    assert [d.runs for d in days] == ["segmentation_job", "daily_refresh_job"]
    assert days[0].decision == "first champion" and days[1].drift_score is not None
    assert days[1].snapshot_date > days[0].snapshot_date
    assert all(d.ari is None for d in days)  # no truth: nothing pretends to know one
    with connect(paths.duckdb_path) as con:
        assert one(con, "select count(*) from monitoring.replay_timeline")[0] == 2


def test_a_run_without_run_config_uses_the_project_file(paths, tmp_path, monkeypatch):
    """What a schedule or the sensor launches carries no run config: the features' window
    comes from segmentation.yml."""
    from segmentation_dagster.core import project
    from tests.conftest import all_assets, resources_for

    simulate.generate(simulate.DemoConfig(n_customers=400, days=40, seed=2),
                      paths.landing_dir, tmp_path / "truth")  # fmt: skip
    (tmp_path / "segmentation.yml").write_text("features: {active_days: 7}\n")
    monkeypatch.setenv(project.PROJECT_ENV, str(tmp_path / "segmentation.yml"))
    result = dg.materialize(
        all_assets(),
        resources=resources_for(paths),
        selection="(group:ingestion or group:transform) and not key:landing_file",
    )
    assert result.success
    with connect(paths.duckdb_path) as con:
        in_scope, quiet = con.execute(
            "select count(*), max(days_since_last_event) from main.customer_features"
        ).fetchone()
        everyone = one(con, "select count(distinct customer_id) from raw.events")[0]
    assert quiet <= 6 and in_scope < everyone
