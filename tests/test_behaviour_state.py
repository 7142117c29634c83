"""The behaviour state (dbt): its unit tests, and the incremental path against a full rebuild
on real files (real DuckDB, real dbt, one day landing after another, a late re-delivery)."""

import re
import shutil

import polars as pl
import pytest
from dbt.cli.main import dbtRunner

from segmentation_dagster.core import ingest
from segmentation_dagster.core.settings import DBT_PROJECT_DIR
from segmentation_dagster.core.warehouse import close_dbt_duckdb, connect, one, open_descriptors
from segmentation_dagster.demo import simulate

STATE_MODELS = ("int_customer_behaviour_state", "int_customer_category_state", "customer_features")


def _dbt(db, tmp_path, *args: str, ok: bool = True):
    """dbt in this process, as the pipeline's dbt step runs it: the database closed after."""
    try:
        result = dbtRunner().invoke([*args, *_dbt_args(tmp_path)])
    finally:
        close_dbt_duckdb()
    if ok:
        assert result.success, result.exception
    return result


def _dbt_args(tmp_path) -> list[str]:
    target = str(tmp_path / "dbt_target")
    return ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
            "--target-path", target, "--log-path", target, "--quiet"]  # fmt: skip


@pytest.fixture
def dbt_db(tmp_path, monkeypatch):
    db = tmp_path / "w.duckdb"
    monkeypatch.setenv("SEGMENTATION_DUCKDB_PATH", str(db))
    return db


def test_the_dbt_unit_tests_of_the_feature_logic_pass(dbt_db, tmp_path):
    with connect(dbt_db) as con:
        ingest.ensure_schema(con)  # empty raw tables: the models are built --empty for types
    _dbt(dbt_db, tmp_path, "run", "--empty")
    _dbt(dbt_db, tmp_path, "test", "--select", "test_type:unit")


def _load(db, landing) -> None:
    with connect(db) as con:
        for kind in ("events", "customers", "products"):
            ingest.load_kind(con, landing, kind)


def _tables(db) -> dict[str, pl.DataFrame]:
    """The state models' rows, without their bookkeeping columns (``_`` prefix)."""
    with connect(db) as con:
        out = {}
        for t in STATE_MODELS:
            df = con.sql(f"select * from main.{t}").pl()
            df = df.select(c for c in df.columns if not c.startswith("_"))
            out[t] = df.sort(df.columns)
        return out


def _assert_same(incremental: dict[str, pl.DataFrame], rebuilt: dict[str, pl.DataFrame]) -> None:
    for name in STATE_MODELS:
        a, b = incremental[name], rebuilt[name]
        assert a.shape == b.shape, name
        for col in a.columns:
            if a[col].dtype.is_float():
                assert (a[col] - b[col]).abs().max() < 1e-9, (name, col)
            else:
                assert a[col].equals(b[col]), (name, col)


@pytest.mark.slow  # dbt run day after day, then a full rebuild
def test_day_by_day_runs_give_the_same_state_and_features_as_a_full_rebuild(dbt_db, tmp_path):
    cfg = simulate.DemoConfig(n_customers=300, days=24, seed=11, scenario="price_wave",
                              shift_day=16)  # fmt: skip
    source = tmp_path / "source"
    simulate.generate(cfg, source, tmp_path / "truth")
    landing = tmp_path / "landing"
    for kind in ("customers", "products"):
        shutil.copytree(source / kind, landing / kind)
    files = sorted((source / "events").iterdir())
    (landing / "events").mkdir()
    for f in files[:18]:
        shutil.copy(f, landing / "events" / f.name)
    _load(dbt_db, landing)
    _dbt(dbt_db, tmp_path, "run")
    for f in files[18:22]:  # one day after another
        shutil.copy(f, landing / "events" / f.name)
        _load(dbt_db, landing)
        _dbt(dbt_db, tmp_path, "run")
    # a late correction: day 10 re-delivered without a third of its rows, with the last days
    late = pl.read_parquet(files[10])
    late.head(late.height * 2 // 3).write_parquet(landing / "events" / files[10].name)
    for f in files[22:]:
        shutil.copy(f, landing / "events" / f.name)
    _load(dbt_db, landing)
    _dbt(dbt_db, tmp_path, "run")
    incremental = _tables(dbt_db)
    with connect(dbt_db) as con:
        changed = con.sql(
            "select count(*) from main.int_customer_behaviour_state where regime_changes > 0"
        ).fetchall()[0][0]
    assert changed > 0  # the price wave restarted some customers' regimes
    _dbt(dbt_db, tmp_path, "run", "--full-refresh")
    rebuilt = _tables(dbt_db)
    _assert_same(incremental, rebuilt)
    # the full build in buckets of customers (as a large shop's is): the same state, and the
    # next incremental run extends it as any other
    _dbt(dbt_db, tmp_path, "run", "--full-refresh", "--vars", "{behaviour_fold_rows: 500}")
    run_sql = tmp_path / "dbt_target" / "run" / "segmentation" / "models" / "intermediate"
    buckets = re.search(r"hash\(customer_id\) % (\d+) = 0",
                        (run_sql / "int_customer_behaviour_state.sql").read_text())  # fmt: skip
    assert buckets and int(buckets.group(1)) > 1, "the build was not split"
    _assert_same(_tables(dbt_db), rebuilt)
    _dbt(dbt_db, tmp_path, "run", "--vars", "{behaviour_fold_rows: 500}")  # its hook: no work
    _assert_same(_tables(dbt_db), rebuilt)


def _errors(result) -> str:
    """The messages of a failed dbt invocation: its exception or its failed nodes'."""
    if result.exception is not None:
        return str(result.exception)
    return " ".join(r.message or "" for r in result.result if r.status in ("error", "fail"))


def _land_days(tmp_path, days: int):
    cfg = simulate.DemoConfig(n_customers=200, days=days, seed=5)
    source = tmp_path / "source"
    simulate.generate(cfg, source, tmp_path / "truth")
    landing = tmp_path / "landing"
    for kind in ("customers", "products"):
        shutil.copytree(source / kind, landing / kind)
    (landing / "events").mkdir()
    return sorted((source / "events").iterdir()), landing


def _deliver(db, landing, files) -> None:
    for f in files:
        shutil.copy(f, landing / "events" / f.name)
    _load(db, landing)


@pytest.mark.slow  # four dbt runs and a full rebuild
def test_a_run_as_of_a_past_date_loses_no_day_that_landed_with_it(dbt_db, tmp_path):
    files, landing = _land_days(tmp_path, 20)
    _deliver(dbt_db, landing, files[:12])
    _dbt(dbt_db, tmp_path, "run")
    _deliver(dbt_db, landing, files[12:])  # eight days at once, the run is as of the second
    past = files[13].name.split(".")[0].split("_")[-1]
    _dbt(dbt_db, tmp_path, "run", "--vars", f"{{snapshot_date: '{past}'}}")
    with connect(dbt_db) as con:
        latest = con.execute("select max(state_date) from main.int_customer_behaviour_state")
        assert str(latest.fetchone()[0]) == past
    _dbt(dbt_db, tmp_path, "run")  # then as of today: the later days are all there
    incremental = _tables(dbt_db)
    _dbt(dbt_db, tmp_path, "run", "--full-refresh")
    rebuilt = _tables(dbt_db)
    _assert_same(incremental, rebuilt)


@pytest.mark.slow  # three dbt runs
def test_a_state_built_empty_is_filled_by_the_next_run(dbt_db, tmp_path):
    """A build as of a date before every event leaves the states empty; the next run must fold
    every customer, not compare their days with the empty state's (null) last build."""
    files, landing = _land_days(tmp_path, 6)
    _deliver(dbt_db, landing, files)
    _dbt(dbt_db, tmp_path, "run", "--vars", "{snapshot_date: '2000-01-01'}")
    with connect(dbt_db) as con:
        assert one(con, "select count(*) from main.int_customer_behaviour_state") == (0,)
    _dbt(dbt_db, tmp_path, "run")
    incremental = _tables(dbt_db)
    assert incremental["int_customer_behaviour_state"].height > 0
    _dbt(dbt_db, tmp_path, "run", "--full-refresh")
    _assert_same(incremental, _tables(dbt_db))


def test_the_state_refuses_other_parameters_and_vars_must_be_what_they_claim(dbt_db, tmp_path):
    files, landing = _land_days(tmp_path, 6)
    _deliver(dbt_db, landing, files[:4])
    _dbt(dbt_db, tmp_path, "run")
    _deliver(dbt_db, landing, files[4:])
    try:
        other = dbtRunner().invoke(["run", "--vars", "{half_life_days: 10}", *_dbt_args(tmp_path)])
        # dbt-duckdb keeps the database open between nodes (keep_open); the dbt step closes
        # it when dbt returns, failed or not, before it lets go of the warehouse lock
        assert open_descriptors(dbt_db)
    finally:
        close_dbt_duckdb()
    assert open_descriptors(dbt_db) == []
    assert not other.success
    assert "folded with half_life_days=30" in _errors(other)
    assert "half_life_days=10" in _errors(other)
    # a full refresh with the new value is the way; after it, runs with that value extend it
    _dbt(dbt_db, tmp_path, "run", "--full-refresh", "--vars", "{half_life_days: 10}")
    _dbt(dbt_db, tmp_path, "run", "--vars", "{half_life_days: 10.0}")  # 10.0 is 10
    early = files[1].name.split(".")[0].split("_")[-1]
    earlier = f"{{half_life_days: 10, snapshot_date: '{early}'}}"
    back = _dbt(dbt_db, tmp_path, "run", "--vars", earlier, ok=False)
    assert not back.success and "snapshot_date is before the behaviour state" in _errors(back)
    for bad in ("{snapshot_date: \"2026-01-01' or 1=1 --\"}", "{half_life_days: '1; drop'}",
                "{change_windows_days: [2, 'x']}", "{active_days: 0}"):  # fmt: skip
        result = _dbt(dbt_db, tmp_path, "run", "--full-refresh", "--vars", bad, ok=False)
        assert not result.success, bad
        assert "must be" in _errors(result), (bad, _errors(result))


@pytest.mark.slow  # three million events, spilled
def test_a_build_goes_on_after_a_node_spills_to_disk(dbt_db, tmp_path, monkeypatch):
    """dbt keeps one database open for the whole invocation (keep_open); each node gets a new
    cursor. Had the memory bound and spill folder been per-cursor `settings`, every node after
    the first spill failed ('Cannot switch temporary directory after the current one has been
    used': DuckDB refuses even the same folder), as the 100M build did."""
    monkeypatch.setenv("SEGMENTATION_DUCKDB_MEMORY_LIMIT", "400MB")
    with connect(dbt_db) as con:
        ingest.ensure_schema(con)
        con.execute(
            "insert into raw.events (event_id, customer_id, event_ts, event_type, session_id, "
            "_source_file, _loaded_at) select 'e' || range, md5((range % 1000000)::varchar), "
            "timestamp '2026-01-01' + to_seconds(range % 86400), 'view', md5(range::varchar), "
            "'events_2026-01-01.parquet', now() from range(3000000)"
        )
    models = ["stg_shop__events", "stg_shop__products", "int_events_aggregated_to_customer_days"]
    result = _dbt(dbt_db, tmp_path, "build", "--select", *models, "--exclude", "test_type:unit",
                  ok=False)  # fmt: skip
    assert result.success, _errors(result)
    tests = [r for r in result.result if r.node.resource_type == "test"]
    assert tests and all(r.status == "pass" for r in tests)


def test_every_duckdb_connection_gets_the_configured_memory_bound(dbt_db, tmp_path, monkeypatch):
    spill = tmp_path / "spill"
    monkeypatch.setenv("SEGMENTATION_DUCKDB_MEMORY_LIMIT", "123MB")
    monkeypatch.setenv("SEGMENTATION_DUCKDB_TEMP_DIR", str(spill))
    query = "select current_setting('memory_limit') as m, current_setting('temp_directory') as t"
    with connect(dbt_db) as con:
        ours = one(con, query)
    with ingest.file_reader([]) as con:
        reader = one(con, query)
    shown = _dbt(dbt_db, tmp_path, "show", "--inline", query).result.results[0].agate_table
    dbts = tuple(shown.rows[0])
    assert ours == reader == dbts == ("117.3 MiB", str(spill))

    monkeypatch.delenv("SEGMENTATION_DUCKDB_MEMORY_LIMIT")  # the default: the same for dbt
    with connect(dbt_db) as con:
        default = one(con, query)
    shown = _dbt(dbt_db, tmp_path, "show", "--inline", query).result.results[0].agate_table
    assert default == tuple(shown.rows[0])

    for bad in ("lots", "0GB", "4GB'; copy (select 1) to '/tmp/x", "150%", "-1GB"):
        monkeypatch.setenv("SEGMENTATION_DUCKDB_MEMORY_LIMIT", bad)
        with pytest.raises(ValueError, match="SEGMENTATION_DUCKDB_MEMORY_LIMIT"):
            with connect(dbt_db):
                pass


def _failing_tests(result) -> set[str]:
    return {r.node.name for r in result.result.results if r.status == "fail"}


def test_key_tests_check_the_new_rows_against_the_whole_history(dbt_db, tmp_path):
    """A daily build checks event_id uniqueness for the rows loaded since the last build (against
    every older row) and the day aggregates' grain for the dates it rebuilt; a duplicate that
    arrives later is still caught."""
    files, landing = _land_days(tmp_path, 6)
    _deliver(dbt_db, landing, files[:4])
    _dbt(dbt_db, tmp_path, "build", "--exclude", "test_type:unit")  # every key test passes
    _deliver(dbt_db, landing, files[4:])
    with connect(dbt_db) as con:  # a new row reusing an event_id of the first day
        con.execute(
            "insert into raw.events select * replace (now()::timestamp as _loaded_at) "
            "from raw.events where _loaded_at = (select min(_loaded_at) from raw.events) limit 1"
        )
    result = _dbt(dbt_db, tmp_path, "build", "--exclude", "test_type:unit", ok=False)
    assert not result.success
    assert [t for t in _failing_tests(result) if t.startswith("unique")] == [
        "unique_in_new_rows_stg_shop__events_int_events_aggregated_to_customer_days__event_id"
    ]


def test_the_category_state_grain_is_checked_for_every_row_of_the_customers_a_build_wrote(
    dbt_db, tmp_path
):
    """The daily build checks (customer_id, category) only for the customers it wrote, but
    all of their rows: a stale row the incremental delete left beside their new rows fails."""
    files, landing = _land_days(tmp_path, 6)
    _deliver(dbt_db, landing, files[:5])
    _dbt(dbt_db, tmp_path, "build", "--exclude", "test_type:unit")
    _deliver(dbt_db, landing, files[5:])
    _dbt(dbt_db, tmp_path, "build", "--exclude", "test_type:unit")  # the grain holds
    state = "main.int_customer_category_state"
    with connect(dbt_db) as con:
        built = con.execute(f"select distinct _days_built_at from {state} order by 1").fetchall()
        assert len(built) == 2  # the second build wrote some customers, not all
        con.execute(  # one written customer's row again, as the build before had it
            f"insert into {state} select * replace (? as _days_built_at) from {state} "
            "where _days_built_at = ? and category is not null limit 1",
            [built[0][0], built[1][0]],
        )
    result = _dbt(dbt_db, tmp_path, "test", "--select", "int_customer_category_state", ok=False)
    failing = [t for t in _failing_tests(result) if t.startswith("unique")]
    assert failing and all(
        t.startswith("unique_combination_int_customer_category_state") for t in failing
    ), failing


def test_whole_table_checks_find_a_duplicate_a_scoped_check_let_stand(dbt_db, tmp_path):
    files, landing = _land_days(tmp_path, 6)
    _deliver(dbt_db, landing, files[:5])
    _dbt(dbt_db, tmp_path, "build", "--exclude", "test_type:unit")
    _deliver(dbt_db, landing, files[5:])
    _dbt(dbt_db, tmp_path, "build", "--exclude", "test_type:unit")
    state = "main.int_customer_category_state"
    with connect(dbt_db) as con:  # a duplicate among the customers the last build did not write
        first = one(con, f"select min(_days_built_at) from {state}")[0]
        con.execute(
            f"insert into {state} select * from {state} "
            "where _days_built_at = ? and category is not null limit 1",
            [first],
        )
    scoped = _dbt(dbt_db, tmp_path, "test", "--select", "int_customer_category_state", ok=False)
    assert scoped.success  # not a key the last build wrote: the daily check does not look
    whole = _dbt(dbt_db, tmp_path, "test", "--select", "int_customer_category_state",
                 "--vars", "{whole_table_checks: true}", ok=False)  # fmt: skip
    assert [t for t in _failing_tests(whole) if t.startswith("unique")], _failing_tests(whole)
