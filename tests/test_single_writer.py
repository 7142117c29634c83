"""DuckDB takes one writing process at a time; overlapping runs must queue, not crash."""

import subprocess
import sys
import textwrap

import duckdb
import pytest

from segmentation_dagster.core import simulate
from segmentation_dagster.core.warehouse import connect, one

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


RUN = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import dagster as dg
    from tests.conftest import make_paths, materialize_all
    p = make_paths(Path(sys.argv[1]))
    result = materialize_all(p, selection="group:ingestion")
    sys.exit(0 if result.success else 1)
    """
)


@pytest.mark.parametrize("n_runs", [2])
def test_overlapping_dagster_runs_on_one_warehouse_both_succeed(tmp_path, n_runs):
    root = tmp_path / "data"
    cfg = simulate.DemoConfig(n_customers=400, days=15, seed=5)
    simulate.generate(cfg, root / "landing", root / "truth")
    procs = [
        subprocess.Popen([sys.executable, "-c", RUN, str(root)], stderr=subprocess.PIPE)
        for _ in range(n_runs)
    ]
    errors = [p.communicate()[1].decode()[-3000:] for p in procs]
    assert [p.returncode for p in procs] == [0] * n_runs, errors
    with connect(root / "warehouse.duckdb") as con:
        loaded = one(con, "select count(*) from raw.load_manifest where kind = 'events'")[0]
        dupes = one(con, "select count(*) - count(distinct event_id) from raw.events")[0]
    assert loaded == 15 and dupes == 0
