"""Runs started from Python (the command line, the replay, the benchmarks): executed one way,
queued, recorded, and cleaned up after a crash.

- **One way to run a job.** :func:`execute` runs a job of the Definitions in this process on an
  instance, tagged with this process, and returns how it ended with the failed steps' errors;
  ``segmentation run``, ``segmentation replay`` and ``benchmarks/bench.py`` all call it.

``segmentation run`` and ``segmentation replay`` execute their jobs in their own process, on
the instance in ``$DAGSTER_HOME``, without the daemon that serves the instance's run queue.
:func:`segmentation_dagster.cli.cli_instance` gives them what the daemon would:

- **A queue.** Runs on one instance take turns in arrival order
  (:func:`segmentation_dagster.core.runlock.run_turn`), so concurrent commands wait instead
  of overlapping. The instance itself is opened only during a turn: a fresh ``DAGSTER_HOME``
  gets its SQLite schema from exactly one process (concurrent first opens race on the schema
  migration and leave ``alembic_version`` with two heads, which breaks every later run).
- **Crash cleanup.** Every run records its process (pid, machine, start time) in run tags.
  Before its own run, the command marks failed every run of the instance that is still
  "in progress" but whose process is gone (``kill -9``, a crash, a reboot), and frees the
  ``duckdb`` pool slots that finished runs still hold; otherwise the next run would wait for
  that slot forever. Under ``make ui`` the daemon's run monitoring (dagster.yaml) does the
  same for runs it launched.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg

from segmentation_dagster.adapters import dagster_internals
from segmentation_dagster.core import runlock

if TYPE_CHECKING:
    from dagster_shared.error import SerializableErrorInfo

PID_TAG = "segmentation/pid"
HOST_TAG = "segmentation/host"
PROCESS_TAG = "segmentation/process"

_Status = dg.DagsterRunStatus
IN_PROGRESS = [_Status.NOT_STARTED, _Status.STARTING, _Status.STARTED, _Status.CANCELING]
FINISHED = [_Status.SUCCESS, _Status.FAILURE, _Status.CANCELED]


def process_tags() -> dict[str, str]:
    """Run tags naming this process, for :func:`fail_dead_runs`."""
    pid = os.getpid()
    return {
        PID_TAG: str(pid),
        HOST_TAG: socket.gethostname(),
        PROCESS_TAG: runlock.process_token(pid) or "",
    }


@dataclass(frozen=True)
class JobRun:
    """How a job run by :func:`execute` ended."""

    job: str
    run_id: str
    success: bool
    seconds: float
    #: (step key, error message) of every step that failed
    failures: tuple[tuple[str, str], ...] = ()

    def failure_summary(self) -> str:
        """The failed steps and their errors on one line ("see UI" when none is known)."""
        return "; ".join(f"{step}: {message}" for step, message in self.failures) or "see UI"


def execute(
    defs: dg.Definitions,
    job: str,
    instance: dg.DagsterInstance,
    *,
    tags: Mapping[str, str] | None = None,
    log_level: str = "INFO",
    capture_stdout: bool = False,
    ops: Mapping[str, object] | None = None,
) -> JobRun:
    """Run ``job`` of ``defs`` in this process on ``instance``. The run is tagged with this
    process (:func:`process_tags`, for :func:`fail_dead_runs`) and ``tags``; Dagster's console
    log shows ``log_level`` and up; ``capture_stdout`` keeps what steps print (dbt's log) off
    the console; ``ops`` is the run config of its steps (e.g. ``dbt_models``'s full refresh). A
    failed step does not raise: its error is in :attr:`JobRun.failures`."""
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}, "ops": ops or {}}
    quiet = (
        contextlib.redirect_stdout(io.StringIO()) if capture_stdout else contextlib.nullcontext()
    )
    t0 = time.perf_counter()
    with quiet:
        result = defs.resolve_job_def(job).execute_in_process(
            instance=instance,
            run_config=run_config,
            tags={**process_tags(), **(tags or {})},
            raise_on_error=False,
        )
    failures = tuple(
        (ev.step_key or "resources", _reason(error))
        for ev in result.all_events
        if (error := _error_of(ev)) is not None
    )
    return JobRun(job, result.run_id, result.success, time.perf_counter() - t0, failures)


#: Dagster's own wrappers of a step's exception, which say where it was raised, not what
_WRAPPERS = (
    "DagsterExecutionStepExecutionError", "DagsterUserCodeExecutionError",
    "DagsterExecutionHandleOutputError", "DagsterExecutionLoadInputError",
    "DagsterResourceFunctionError",
)  # fmt: skip


def _error_of(ev: dg.DagsterEvent) -> SerializableErrorInfo | None:
    """The error of a step that failed, or of a resource that could not start (which fails
    the run without a step failure of its own)."""
    if ev.is_step_failure and ev.step_failure_data:
        return ev.step_failure_data.error
    if ev.is_resource_init_failure:
        return getattr(ev.event_specific_data, "error", None)
    return None


def _reason(error: SerializableErrorInfo) -> str:
    """What went wrong, not where: the step's own exception inside Dagster's wrapper ("Error
    occurred while executing op ..."), whose message names the file, column and rule (not
    what that exception was raised from: its cause is a detail of the step's own message)."""
    while error.cls_name in _WRAPPERS and error.cause is not None:
        error = error.cause
    return error.message.strip()


def _is_dead(instance: dg.DagsterInstance, run: dg.DagsterRun, created: dt.datetime) -> bool:
    # every run of a SQLite instance runs on the machine that holds its files (whatever the
    # machine is called now: a container gets a new hostname when it restarts)
    local = dagster_internals.is_sqlite_instance(instance)
    tags = run.tags
    if PID_TAG in tags:
        if tags.get(HOST_TAG) != socket.gethostname() and not local:
            return False  # another machine's process: not ours to judge
        return not runlock.process_alive(int(tags[PID_TAG]), tags.get(PROCESS_TAG) or None)
    # a run launched some other way (the UI, an older version of this command): judge it by the
    # pid in its events
    pid = dagster_internals.engine_pid(instance, run.run_id) if local else None
    if pid is None:
        return False
    if not runlock.process_alive(pid):
        return True
    # a process that started after the run was created is another one that got the pid
    started = runlock.process_started_at(pid)
    return started is not None and started > created.timestamp() + 1


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the in-progress runs whose process is gone, and free the concurrency slots
    held by runs that are over. Returns the ids of the runs marked failed."""
    failed = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=IN_PROGRESS)):
        run = record.dagster_run
        if not _is_dead(instance, run, record.create_timestamp):
            continue
        instance.report_run_failed(
            run,
            "the process of this run is gone: it was killed or crashed. Marked failed by a "
            f"later run (pid {os.getpid()}) so that its pool slots are freed.",
        )
        failed.append(run.run_id)
    dagster_internals.free_slots_of_runs_over(instance, FINISHED)
    return failed
