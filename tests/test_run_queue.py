"""Commands that run jobs take turns on the instance, in arrival order; a run whose process died
neither blocks the queue nor keeps its pool slot. Real processes, real kill -9, a real instance.
"""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from segmentation_dagster.core.runlock import queue_dir
from segmentation_dagster.core.settings import REPO_ROOT
from segmentation_dagster.runs import fail_dead_runs
from tests.conftest import wait_for

TURN = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from segmentation_dagster.core.runlock import run_turn
    folder, log, who, hold = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    with run_turn(folder, poll_s=0.05):
        with log.open("a") as f:
            f.write(f"start {who} {time.time()}\\n")
        time.sleep(hold)
        with log.open("a") as f:
            f.write(f"end {who} {time.time()}\\n")
    """
)


def _tickets(folder: Path) -> set[str]:
    q = queue_dir(folder)
    return {p.name for p in q.iterdir() if not p.name.startswith(".")} if q.exists() else set()


def _queue_up(folder: Path, log: Path, who: str, hold: float) -> subprocess.Popen:
    """Start a process that waits for its turn; return once it is in the queue."""
    before = _tickets(folder)
    proc = subprocess.Popen([sys.executable, "-c", TURN, str(folder), str(log), who, str(hold)])
    wait_for(lambda: _tickets(folder) - before, what=f"{who} to queue up")
    return proc


def _log(log: Path) -> list[tuple[str, str, float]]:
    if not log.exists():
        return []
    return [
        (a, b, float(c))
        for a, b, c in (line.split() for line in log.read_text().split("\n") if line)
    ]


def test_runs_take_turns_in_arrival_order(tmp_path):
    folder, log = tmp_path / "runs", tmp_path / "log"
    procs = [_queue_up(folder, log, who, 0.3) for who in "abcd"]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    events = _log(log)
    assert [(what, who) for what, who, _ in events] == [
        (what, who) for who in "abcd" for what in ("start", "end")
    ]
    # one at a time: each started after the previous one ended
    assert all(events[i][2] <= events[i + 1][2] for i in range(len(events) - 1))
    assert _tickets(folder) == set()


def test_a_killed_run_does_not_block_the_queue(tmp_path):
    """The run holding the turn and one waiting behind it are killed with SIGKILL; the runs
    behind them go ahead without anyone removing anything by hand."""
    folder, log = tmp_path / "runs", tmp_path / "log"
    holder = _queue_up(folder, log, "holder", 600)
    wait_for(lambda: any(who == "holder" for _, who, _ in _log(log)), what="holder's turn")
    waiter = _queue_up(folder, log, "waiter", 0)
    last = _queue_up(folder, log, "last", 0)
    time.sleep(0.5)
    assert waiter.poll() is None and last.poll() is None  # queued behind the holder
    waiter.kill()
    holder.kill()
    holder.wait(), waiter.wait()
    assert last.wait(timeout=30) == 0
    assert [(what, who) for what, who, _ in _log(log)] == [
        ("start", "holder"),
        ("start", "last"),
        ("end", "last"),
    ]
    assert _tickets(folder) == set()


OPEN_INSTANCE = textwrap.dedent(
    """
    from segmentation_dagster.cli import cli_instance
    from segmentation_dagster.core.settings import Paths
    with cli_instance(Paths.from_env()) as instance:
        instance.get_runs()
    """
)


def _fresh_home(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGMENTATION_")}
    return {**env, "DAGSTER_HOME": str(home), "SEGMENTATION_DATA_DIR": str(tmp_path / "data")}


@pytest.mark.slow  # a storm of processes
def test_commands_starting_together_on_a_fresh_instance_leave_it_healthy(tmp_path):
    """Opened by several processes at once, a fresh SQLite instance got its schema migrated
    twice ("alembic_version ... more than one head") and no run could use it again."""
    env = _fresh_home(tmp_path)
    procs = [
        subprocess.Popen([sys.executable, "-c", OPEN_INSTANCE], env=env, stderr=subprocess.PIPE)
        for _ in range(6)
    ]
    errors = [p.communicate(timeout=300)[1].decode()[-2000:] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
    again = subprocess.run(
        [sys.executable, "-c", OPEN_INSTANCE], env=env, capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr[-2000:]


HOLD_A_SLOT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import dagster as dg
    from segmentation_dagster.runs import process_tags

    @dg.op(pool="duckdb")
    def long_step():
        Path(sys.argv[1]).write_text("in the step")
        time.sleep(600)

    @dg.job
    def slot_job():
        long_step()

    tags = process_tags() if sys.argv[2] == "tagged" else {}
    slot_job.execute_in_process(instance=dg.DagsterInstance.get(), tags=tags)
    """
)


@pytest.mark.slow  # a run in a process that is killed
@pytest.mark.parametrize("launched_by", ["tagged", "untagged"])
def test_a_killed_run_is_marked_failed_and_its_pool_slot_freed(tmp_path, monkeypatch, launched_by):
    """Tagged: started by `segmentation run`, which records its process in run tags. Untagged:
    started some other way; judged by the pid in Dagster's own engine event."""
    env = _fresh_home(tmp_path)
    marker = tmp_path / "in_step"
    proc = subprocess.Popen([sys.executable, "-c", HOLD_A_SLOT, str(marker), launched_by], env=env)
    try:
        wait_for(marker.exists, timeout_s=120, what="the step to start")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    with dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.STARTED  # what the dead process left behind
        assert instance.event_log_storage.get_concurrency_run_ids() == {run.run_id}

        assert fail_dead_runs(instance) == [run.run_id]

        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
        assert instance.event_log_storage.get_concurrency_run_ids() == set()
        assert fail_dead_runs(instance) == []  # idempotent; live and finished runs untouched
