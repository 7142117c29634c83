"""DuckDB takes one writing process at a time; overlapping runs must queue, not crash."""

import subprocess
import sys
import textwrap

import duckdb
import pytest

from segmentation_dagster.core.warehouse import (
    WarehouseLockTimeout,
    connect,
    locked,
    one,
    open_descriptors,
)
from segmentation_dagster.demo import simulate

WRITER = textwrap.dedent(
    """
    import sys, time
    from segmentation_dagster.core.warehouse import connect
    with connect(sys.argv[1]) as con:
        con.execute("create table if not exists t (who varchar, started double)")
        con.execute("insert into t values (?, ?)", [sys.argv[2], time.time()])
        time.sleep(1.5)  # hold the database like a long step would
    """
)


def test_a_second_process_without_the_lock_fails(tmp_path):
    """The control: DuckDB itself refuses a second writer, so the queueing below is real."""
    db = tmp_path / "w.duckdb"
    con = duckdb.connect(str(db))
    try:
        other = subprocess.run(
            [sys.executable, "-c", f"import duckdb; duckdb.connect({str(db)!r})"],
            capture_output=True,
            text=True,
        )
        assert other.returncode != 0 and "lock" in other.stderr.lower()
    finally:
        con.close()


@pytest.mark.slow  # three processes queueing
def test_overlapping_writers_queue_and_both_succeed(tmp_path):
    db = tmp_path / "w.duckdb"
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(db), who], stderr=subprocess.PIPE)
        for who in ("a", "b", "c")
    ]
    errors = [p.communicate()[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    with connect(db) as con:
        rows = con.execute("select who, started from t order by started").fetchall()
    assert sorted(r[0] for r in rows) == ["a", "b", "c"]
    # serialised: each writer started after the previous one let go
    assert all(b[1] - a[1] >= 1.4 for a, b in zip(rows, rows[1:], strict=False))


TAKE_LOCK = textwrap.dedent(
    """
    import sys
    from segmentation_dagster.core.warehouse import WarehouseLockTimeout, locked
    try:
        with locked(sys.argv[1], timeout_s=1.0):
            pass
    except WarehouseLockTimeout:
        sys.exit(3)
    """
)


def _other_process_gets_the_lock(db) -> bool:
    code = subprocess.run([sys.executable, "-c", TAKE_LOCK, str(db)]).returncode
    assert code in (0, 3)
    return code == 0


def test_the_lock_is_reentrant_in_the_thread_that_holds_it(tmp_path):
    """A helper that opens its own connection inside a step's lock must not wait for itself."""
    db = tmp_path / "w.duckdb"
    with connect(db, timeout_s=2) as outer:
        outer.execute("create table t as select 1 as x")
        with connect(db, timeout_s=2) as inner:
            assert one(inner, "select x from t") == (1,)
        with locked(db, timeout_s=2):
            pass
        outer.execute("insert into t values (2)")  # still ours after the inner blocks
        assert not _other_process_gets_the_lock(db)
    assert _other_process_gets_the_lock(db)


def test_the_lock_is_held_while_the_file_is_still_open_in_the_process(tmp_path):
    """What dbt-duckdb did: open the file inside the lock and keep it open afterwards. Another
    process must keep waiting (not reach DuckDB and fail on its file lock) until it is closed."""
    db = tmp_path / "w.duckdb"
    with locked(db):
        leaked = duckdb.connect(str(db))
    try:
        assert open_descriptors(db)
        assert not _other_process_gets_the_lock(db)
    finally:
        leaked.close()
    with locked(db):  # the next block that ends finds the file closed and lets go
        pass
    assert not open_descriptors(db)
    assert _other_process_gets_the_lock(db)


def test_another_thread_waits_for_the_lock(tmp_path):
    import threading

    db = tmp_path / "w.duckdb"
    outcome = []

    def other() -> None:
        try:
            with locked(db, timeout_s=0.5):
                outcome.append("got it")
        except WarehouseLockTimeout:
            outcome.append("timed out")

    with locked(db):
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert outcome == ["timed out"]


@pytest.mark.slow  # the whole graph
def test_dbt_leaves_the_database_closed_when_its_step_ends(pipeline_run):
    """dbt-duckdb keeps its DuckDB instance open across invocations (profiles.yml: keep_open:
    true) unless the step closes it (warehouse.close_dbt_duckdb); once it stayed open in the run's
    process after the step let go of the lock, and the next process failed with 'Could not set
    lock on file'."""
    p, result = pipeline_run
    assert result.success
    assert open_descriptors(p.duckdb_path) == []
    other = subprocess.run(
        [sys.executable, "-c", f"import duckdb; duckdb.connect({str(p.duckdb_path)!r}).close()"],
        capture_output=True,
        text=True,
    )
    assert other.returncode == 0, other.stderr


WHOLE_GRAPH = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from tests.conftest import make_paths, materialize_all
    result = materialize_all(make_paths(Path(sys.argv[1])))
    sys.exit(0 if result.success else 1)
    """
)


@pytest.mark.slow  # whole jobs in parallel processes
def test_overlapping_whole_jobs_on_one_warehouse_all_succeed(tmp_path):
    """Whole graphs (ingestion, dbt, gates, fit, assignment, monitors) in separate processes on
    one warehouse, with nothing but the warehouse lock between them (each has its own
    throwaway Dagster instance, so no pool or run queue): their steps interleave, none fails."""
    root = tmp_path / "data"
    cfg = simulate.DemoConfig(n_customers=300, days=20, seed=5)
    simulate.generate(cfg, root / "landing", root / "truth")
    procs = [
        subprocess.Popen([sys.executable, "-c", WHOLE_GRAPH, str(root)], stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    errors = [p.communicate()[1].decode()[-3000:] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    with connect(root / "warehouse.duckdb") as con:
        loaded = one(con, "select count(*) from raw.load_manifest where kind = 'events'")[0]
        dupes = one(con, "select count(*) - count(distinct event_id) from raw.events")[0]
        models, champions, decisions = one(
            con,
            "select count(*), count(*) filter (status = 'champion'), "
            "(select count(*) from segmentation.model_decisions) "
            "from segmentation.model_registry",
        )
        unassigned = one(
            con,
            "select count(*) from main.customer_features f "
            "anti join segmentation.customer_segments s using (customer_id)",
        )[0]
    assert loaded == 20 and dupes == 0
    assert (models, champions, decisions) == (2, 1, 2)
    assert unassigned == 0
