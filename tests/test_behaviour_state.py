"""The behaviour state (dbt): its unit tests, and the incremental path against a full rebuild
on real files (real DuckDB, real dbt, one day landing after another, a late re-delivery)."""

import shutil

import polars as pl
import pytest
from dbt.cli.main import dbtRunner

from segmentation_dagster.core import ingest
from segmentation_dagster.core.settings import DBT_PROJECT_DIR
from segmentation_dagster.core.warehouse import connect
from segmentation_dagster.demo import simulate

STATE_MODELS = ("int_customer_behaviour_state", "int_customer_category_state", "customer_features")


def _dbt(db, tmp_path, *args: str) -> None:
    result = dbtRunner().invoke(
        [
            *args,
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
            "--target-path",
            str(tmp_path / "dbt_target"),
            "--log-path",
            str(tmp_path / "dbt_target"),
            "--quiet",
        ]  # fmt: skip
    )
    assert result.success, result.exception


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
    for name in STATE_MODELS:
        a, b = incremental[name], rebuilt[name]
        assert a.shape == b.shape, name
        for col in a.columns:
            if a[col].dtype.is_float():
                assert (a[col] - b[col]).abs().max() < 1e-9, (name, col)
            else:
                assert a[col].equals(b[col]), (name, col)
