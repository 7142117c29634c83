"""The automation record: sensor and schedule ticks that commands outside the daemon
(``segmentation daily``, the replay) write into the instance exactly where Dagster's own
daemon writes them, so the UI shows one history whoever evaluated the sensor.

The instance keys a sensor's or schedule's state and ticks by its *selector* (code location,
repository, name), which is the same for the UI's code location (workspace.yaml) and for this
process. What the UI then shows:

- the sensor's ticks (skipped with the policy's reason, or the run it requested), its cursor
  (the policy state) and its last run key; the daemon under ``make ui`` continues from that
  cursor, and a command continues from the daemon's;
- the schedule's ticks with their runs;
- runs tagged ``dagster/sensor_name`` / ``dagster/schedule_name`` ("launched by").

A sensor or schedule stopped in the UI is respected: :func:`is_running` says so and the caller
does not evaluate it. Uses ``dagster._core`` types (no public API writes ticks); kept here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster._core.definitions.selector import InstigatorSelector
from dagster._core.definitions.sensor_definition import SensorType
from dagster._core.remote_origin import (
    InProcessCodeLocationOrigin,
    RemoteInstigatorOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.scheduler.instigation import (
    InstigatorState,
    InstigatorStatus,
    InstigatorTick,
    InstigatorType,
    SensorInstigatorData,
    TickData,
    TickStatus,
)
from dagster._core.storage.tags import RUN_KEY_TAG, SCHEDULE_NAME_TAG, SENSOR_NAME_TAG
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._serdes import create_snapshot_id

#: workspace.yaml's code location (a python_module location is named after its module)
LOCATION = "segmentation_dagster.definitions"
REPOSITORY = "__repository__"  # the repository every dg.Definitions becomes
WORKSPACE = Path(__file__).resolve().parents[2] / "workspace.yaml"

SKIPPED, SUCCESS, FAILURE = TickStatus.SKIPPED, TickStatus.SUCCESS, TickStatus.FAILURE


@dataclass(frozen=True)
class Instigator:
    """A sensor or schedule of this project's code location, as the instance keys it."""

    name: str
    kind: InstigatorType
    origin: RemoteInstigatorOrigin
    selector_id: str
    min_interval: int | None = None

    @property
    def origin_id(self) -> str:
        return self.origin.get_id()


def _location_origin():  # noqa: ANN202
    """The UI's code location origin (workspace.yaml) where the repository has one, else this
    module in process; both carry the same location name, so the same selectors."""
    if WORKSPACE.is_file():
        for origin in WorkspaceFileTarget(paths=[str(WORKSPACE)]).create_origins():
            if origin.location_name == LOCATION:
                return origin
    return InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name=LOCATION), location_name=LOCATION
    )


def _instigator(name: str, kind: InstigatorType, min_interval: int | None = None) -> Instigator:
    origin = RemoteInstigatorOrigin(RemoteRepositoryOrigin(_location_origin(), REPOSITORY), name)
    selector = InstigatorSelector(location_name=LOCATION, repository_name=REPOSITORY, name=name)
    return Instigator(name, kind, origin, create_snapshot_id(selector), min_interval)


def sensor(definition: dg.SensorDefinition) -> Instigator:
    return _instigator(definition.name, InstigatorType.SENSOR, definition.minimum_interval_seconds)


def schedule(definition: dg.ScheduleDefinition) -> Instigator:
    return _instigator(definition.name, InstigatorType.SCHEDULE)


def requested_before(instance: dg.DagsterInstance, inst: Instigator, run_key: str) -> bool:
    """Whether a run with this run key was already launched for the sensor (the daemon then
    skips the request)."""
    tags = {SENSOR_NAME_TAG: inst.name, RUN_KEY_TAG: run_key}
    return bool(instance.get_run_ids(dg.RunsFilter(tags=tags), limit=1))


def keeps_record(instance: dg.DagsterInstance) -> bool:
    """Whether the instance stores sensor/schedule state and ticks (an ephemeral one does not)."""
    return getattr(instance, "_schedule_storage", None) is not None


def _state(instance: dg.DagsterInstance, inst: Instigator) -> InstigatorState | None:
    return instance.get_instigator_state(inst.origin_id, inst.selector_id)


def is_running(instance: dg.DagsterInstance, inst: Instigator, default_running: bool) -> bool:
    """Whether the sensor/schedule is on: as last switched in the UI, else its default."""
    state = _state(instance, inst)
    if state is None or state.status == InstigatorStatus.DECLARED_IN_CODE:
        return default_running
    return state.status == InstigatorStatus.RUNNING


def cursor(instance: dg.DagsterInstance, inst: Instigator) -> str | None:
    """The sensor's cursor as the daemon and the UI see it."""
    state = _state(instance, inst)
    data = state.instigator_data if state else None
    return data.cursor if isinstance(data, SensorInstigatorData) else None


def start_tick(instance: dg.DagsterInstance, inst: Instigator) -> InstigatorTick:
    return instance.create_tick(
        TickData(
            instigator_origin_id=inst.origin_id,
            instigator_name=inst.name,
            instigator_type=inst.kind,
            status=TickStatus.STARTED,
            timestamp=time.time(),
            selector_id=inst.selector_id,
        )
    )


def run_tags(inst: Instigator, tick: InstigatorTick, run_key: str | None = None) -> dict[str, str]:
    """The tags the daemon puts on a run it launches for this sensor/schedule tick."""
    name_tag = SENSOR_NAME_TAG if inst.kind == InstigatorType.SENSOR else SCHEDULE_NAME_TAG
    tags = {name_tag: inst.name, "dagster/tick": str(tick.tick_id)}
    if run_key:
        tags[RUN_KEY_TAG] = run_key
    return tags


def finish_tick(
    instance: dg.DagsterInstance,
    inst: Instigator,
    tick: InstigatorTick,
    status: TickStatus,
    *,
    run_id: str | None = None,
    run_key: str | None = None,
    skip_reason: str | None = None,
    new_cursor: str | None = None,
    error: str | None = None,
) -> None:
    """Close the tick (skipped with its reason, or with its run) and move the instigator's
    state on as the daemon does: the sensor's cursor (unless the tick failed), its last run
    key and tick times."""
    if run_id:
        tick = tick.with_run_info(run_id, run_key)
    extra: dict[str, object] = {}
    if status == SKIPPED and skip_reason:
        extra["skip_reason"] = skip_reason[:1000]
    if status == FAILURE:
        from dagster._utils.error import SerializableErrorInfo

        extra["error"] = SerializableErrorInfo(error or "failed", [], "Failure")
    if inst.kind == InstigatorType.SENSOR and status != FAILURE:
        extra["cursor"] = new_cursor
    instance.update_tick(tick.with_status(status, **extra))
    _update_state(instance, inst, tick, status, run_key, new_cursor)


def _update_state(
    instance: dg.DagsterInstance,
    inst: Instigator,
    tick: InstigatorTick,
    status: TickStatus,
    run_key: str | None,
    new_cursor: str | None,
) -> None:
    if inst.kind == InstigatorType.SCHEDULE:
        return  # a schedule's ticks are its record; the daemon keeps its own state
    state = _state(instance, inst)
    now = time.time()
    old = state.instigator_data if state else None
    old = old if isinstance(old, SensorInstigatorData) else SensorInstigatorData()
    data = SensorInstigatorData(
        last_tick_timestamp=tick.timestamp,
        last_run_key=run_key or old.last_run_key,
        min_interval=old.min_interval or inst.min_interval,
        cursor=old.cursor if status == FAILURE else new_cursor,
        last_tick_start_timestamp=tick.timestamp,
        last_sensor_start_timestamp=old.last_sensor_start_timestamp or now,
        sensor_type=old.sensor_type or SensorType.STANDARD,
        last_tick_success_timestamp=None if status == FAILURE else now,
    )
    if state is None:
        instance.add_instigator_state(
            InstigatorState(inst.origin, inst.kind, InstigatorStatus.DECLARED_IN_CODE, data)
        )
    else:
        instance.update_instigator_state(state.with_data(data))
