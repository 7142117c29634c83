"""Dagster instance internals the sensor and the run cleanup read: storage methods and event
payloads that are not part of Dagster's documented API.

- the latest execution of asset checks and its severity (``AssetCheckExecutionRecordStatus``
  from ``dagster._core``, ``event_log_storage.get_latest_asset_check_execution_by_key``);
- whether the instance keeps its runs in SQLite (the run storage's class);
- the pid Dagster recorded in a run's engine events;
- the concurrency slots held per run, and freeing them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus


def failed_error_checks(
    instance: dg.DagsterInstance, keys: Sequence[dg.AssetCheckKey]
) -> list[dg.AssetCheckKey]:
    """The checks among ``keys`` whose latest execution failed with severity ERROR."""
    records = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    failing = []
    for key, record in records.items():
        if record.status != AssetCheckExecutionRecordStatus.FAILED or record.event is None:
            continue
        evaluation = record.event.dagster_event.event_specific_data
        if getattr(evaluation, "severity", None) == dg.AssetCheckSeverity.ERROR:
            failing.append(key)
    return failing


def is_sqlite_instance(instance: dg.DagsterInstance) -> bool:
    """Whether the instance keeps its runs in SQLite files (so every run of it ran on the
    machine that holds them)."""
    return type(instance.run_storage).__name__ == "SqliteRunStorage"


def engine_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid Dagster itself recorded for the run's process ("Executing steps in process
    (pid: N)", "Started process for run (pid: N)"), if any."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        data = entry.dagster_event.engine_event_data if entry.dagster_event else None
        pid = data.metadata.get("pid") if data else None
        if pid is not None:
            return int(pid.value)
    return None


def free_slots_of_runs_over(
    instance: dg.DagsterInstance, finished: Iterable[dg.DagsterRunStatus]
) -> list[str]:
    """Free the concurrency slots still held by runs whose status is in ``finished``; returns
    those runs' ids (none where the instance has no concurrency limits)."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    holders = storage.get_concurrency_run_ids()
    if not holders:
        return []
    over = instance.get_run_records(dg.RunsFilter(run_ids=list(holders), statuses=list(finished)))
    freed = []
    for record in over:
        storage.free_concurrency_slots_for_run(record.dagster_run.run_id)
        freed.append(record.dagster_run.run_id)
    return freed
