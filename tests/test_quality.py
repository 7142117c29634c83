"""Quality gates in Dagster: real GX validations, blocking vs warn, audit trail, dbt tests."""

import json
import re

import dagster as dg
import pytest

from segmentation_dagster.core import quality
from segmentation_dagster.core.settings import EXPECTATIONS_DIR
from segmentation_dagster.core.warehouse import connect, one
from segmentation_dagster.defs.quality.checks import build_suite_checks
from segmentation_dagster.demo import simulate
from tests.conftest import resources_for

SMALL = simulate.DemoConfig(n_customers=400, days=20, seed=4)


def _assets() -> list:
    from segmentation_dagster.definitions import defs

    return list(defs.assets or [])


def _suite_copy(tmp_path, name: str, edit) -> quality.Suite:
    raw = json.loads((EXPECTATIONS_DIR / f"{name}.json").read_text())
    edit(raw)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(raw))
    return quality.load_suite(path)


def _strict_price(severity: str):
    def edit(raw):
        raw["expectations"].append(
            {"type": "expect_column_values_to_be_between",
             "kwargs": {"column": "price", "max_value": 1},
             "meta": {"severity": severity, "description": "test: absurdly strict"}}
        )  # fmt: skip

    return edit


def _run(paths, checks, selection=None):
    return dg.materialize(
        _assets() + checks,
        resources=resources_for(paths),
        instance=dg.DagsterInstance.ephemeral(),
        selection=selection or dg.AssetSelection.all() - dg.AssetSelection.assets("landing_file"),
        raise_on_error=False,
    )


def _materialized(result) -> set[str]:
    return {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()}


@pytest.fixture
def landed(paths):
    simulate.generate(SMALL, paths.landing_dir, paths.truth_dir)
    return paths


def test_every_suite_file_loads_and_guards_against_empty_data():
    suites = quality.load_suites(EXPECTATIONS_DIR)
    assert {s.asset for s in suites} >= {"raw_events", "raw_customers", "raw_products",
                                        "customer_features"}  # fmt: skip
    for s in suites:  # a required input guards against empty data; an optional one may be
        assert s.optional or any(e.type == quality.ROW_COUNT for e in s.expectations)


def test_empty_table_fails_the_gate(tmp_path):
    import pandas as pd

    suite = quality.load_suite(EXPECTATIONS_DIR / "raw_events.json")
    empty = pd.DataFrame({"customer_id": [], "event_id": [], "event_type": [], "price": [],
                          "quantity": [], "review_rating": []})  # fmt: skip
    outcomes = quality.validate(empty, suite)
    row_count = next(o for o in outcomes if o.expectation.type == quality.ROW_COUNT)
    assert not row_count.success and row_count.expectation.severity == "error"


def test_a_large_table_is_sampled_to_the_same_rows_every_time(tmp_path):
    import dataclasses

    suite = dataclasses.replace(
        quality.load_suite(EXPECTATIONS_DIR / "raw_events.json"), table="t", sample_rows=100
    )
    with connect(tmp_path / "w.duckdb") as con:
        con.execute("create table t as select range as id, range % 7 as x from range(5000)")
        con.execute("create view v as select * from t")
        first, again = quality.sample_frame(con, suite), quality.sample_frame(con, suite)
        other = quality.sample_frame(con, suite, seed=7)
        view = quality.sample_frame(con, dataclasses.replace(suite, table="v"))
    assert len(first) == 100 and first["id"].is_unique and list(first.columns) == ["id", "x"]
    assert first.equals(again)
    assert set(first["id"]) != set(other["id"])
    assert first["id"].max() > 4000  # from the whole table, not its first rows
    assert len(view) == 100 and view["id"].is_unique
    assert first["id"].is_monotonic_increasing  # in table order, as a scan would give them


def test_a_sample_is_full_size_and_uniform_when_rows_were_deleted(tmp_path):
    """Deleted rows (an erased customer) leave gaps in the row ids the sample draws from."""
    import dataclasses

    suite = dataclasses.replace(
        quality.load_suite(EXPECTATIONS_DIR / "raw_events.json"), table="t", sample_rows=500
    )
    with connect(tmp_path / "w.duckdb") as con:
        con.execute("create table t as select range as id from range(20000)")
        con.execute("delete from t where id % 10 < 7 or id < 5000")  # 30 % left, none at first
        df = quality.sample_frame(con, suite)
        con.execute("begin")  # rows of an open transaction have row ids far past the rest
        con.execute("insert into t select range as id from range(20000, 21000)")
        pending = quality.sample_frame(con, suite)
        con.execute("rollback")
    assert len(pending) == 500 and pending["id"].is_unique
    assert len(df) == 500 and df["id"].is_unique
    assert (df["id"] % 10 >= 7).all() and df["id"].min() >= 5000
    assert df.attrs["table_rows"] == 4500
    assert 0.4 < (df["id"] < 12500).mean() < 0.6  # the whole range, evenly


def test_each_expectation_gets_its_own_result_and_an_error_names_the_column(tmp_path):
    import pandas as pd

    def edit(raw):
        raw["expectations"] = [
            {"type": "expect_column_values_to_be_between",
             "kwargs": {"column": "price", "min_value": 0, "max_value": 10}},
            {"type": "expect_column_values_to_be_between",  # same type and column, looser
             "kwargs": {"column": "price", "min_value": 0, "max_value": 100}},
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "no_such"}},
        ]  # fmt: skip

    suite = _suite_copy(tmp_path, "raw_events", edit)
    df = pd.DataFrame({"price": [1.0, 5.0, 50.0]})
    by_type = {(o.expectation.type, o.expectation.kwargs.get("max_value")): o
               for o in quality.validate(df, suite)}  # fmt: skip
    assert not by_type[("expect_column_values_to_be_between", 10)].success
    assert by_type[("expect_column_values_to_be_between", 10)].failing_rows == [{"price": 50.0}]
    assert by_type[("expect_column_values_to_be_between", 100)].success
    missing = by_type[("expect_column_values_to_not_be_null", None)]
    assert not missing.success and '"no_such"' in missing.error


def test_failing_rows_are_drawn_from_the_rows_the_condition_selects(tmp_path):
    import pandas as pd

    def edit(raw):
        raw["expectations"] = [
            {"type": "expect_column_values_to_not_be_null",
             "kwargs": {"column": "price", "row_condition": 'event_type == "purchase"',
                        "condition_parser": "pandas"}},
        ]  # fmt: skip

    suite = _suite_copy(tmp_path, "raw_events", edit)
    df = pd.DataFrame(
        {"event_type": ["search", "purchase", "search", "purchase"],
         "event_id": ["e1", "e2", "e3", "e4"], "price": [None, None, None, 3.0]}
    )  # fmt: skip
    (outcome,) = [
        o for o in quality.validate(df, suite) if o.expectation.kwargs.get("column") == "price"
    ]
    assert not outcome.success
    assert [r["event_id"] for r in outcome.failing_rows] == ["e2"]  # not the searches


def test_failing_error_check_blocks_everything_downstream(landed, tmp_path):
    suite = _suite_copy(tmp_path, "raw_events", _strict_price("error"))
    result = _run(landed, [build_suite_checks(suite)])
    assert not result.success
    done = _materialized(result)
    assert "raw_events" in done
    assert not done & {"stg_shop__events", "customer_features", "segmentation_model"}
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    failed = evals[suite.expectations[-1].check_name]
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
    assert failed.metadata["failing_rows_sample"].value  # rows the user can look at
    assert failed.metadata["report"].value.endswith(".md")


@pytest.mark.slow  # the graph downstream of the gate
def test_failing_warn_check_is_reported_and_downstream_still_runs(landed, tmp_path):
    suite = _suite_copy(tmp_path, "raw_events", _strict_price("warn"))
    result = _run(landed, [build_suite_checks(suite)])
    assert result.success
    assert {"customer_features", "segmentation_model", "customer_segments"} <= _materialized(result)
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    strict = evals[suite.expectations[-1].check_name]
    assert not strict.passed and strict.severity == dg.AssetCheckSeverity.WARN


@pytest.mark.slow  # the graph downstream of the gate
def test_loosening_a_bound_in_a_copied_suite_makes_the_gate_pass(landed, tmp_path):
    def strict(raw):
        raw["expectations"].append(
            {"type": "expect_column_values_to_be_between",
             "kwargs": {"column": "frequency", "min_value": 1, "mostly": 0.99},
             "meta": {"severity": "error"}}
        )  # fmt: skip

    def loose(raw):
        strict(raw)
        raw["expectations"][-1]["kwargs"]["mostly"] = 0.05

    results = {}
    for name, edit in (("strict", strict), ("loose", loose)):
        (tmp_path / name).mkdir()
        suite = _suite_copy(tmp_path / name, "customer_features", edit)
        result = _run(landed, [build_suite_checks(suite)])
        results[name] = result
    assert not results["strict"].success
    assert "segmentation_model" not in _materialized(results["strict"])
    assert results["loose"].success and "segmentation_model" in _materialized(results["loose"])


def test_every_validation_is_appended_to_the_audit_trail(landed):
    from segmentation_dagster.defs.quality.checks import gx_checks

    selection = "group:ingestion and not key:landing_file"
    first = _run(landed, gx_checks, selection)
    second = _run(landed, gx_checks, selection)
    assert first.success and second.success
    with connect(landed.duckdb_path) as con:
        runs = con.execute(
            "select run_id, count(*) from audit.validations where source = 'gx' group by 1"
        ).fetchall()
    assert {r[0] for r in runs} == {first.run_id, second.run_id}
    expected = sum(
        len(s.expectations)
        for s in quality.load_suites(EXPECTATIONS_DIR)
        if s.asset in {"raw_events", "raw_customers", "raw_products"}
    )
    assert runs[0][1] == runs[1][1] == expected


def test_failing_dbt_test_blocks_the_python_assets_and_is_audited(landed):
    _run(landed, [], "group:ingestion")
    with connect(landed.duckdb_path) as con:  # someone loads raw data by hand, bypassing checks
        con.execute(
            "insert into raw.events (event_id, customer_id, event_ts, event_type, _source_file, "
            "_loaded_at) values ('manual-1', null, now()::timestamp - interval 1 day, 'view', "
            "'manual', now()::timestamp)"
        )
    result = _run(landed, [], "group:transform or group:segmentation")
    assert not result.success
    assert "segmentation_model" not in _materialized(result)
    # the dbt step's error names the failing test and where dbt's own log is
    (failure,) = [e for e in result.get_step_failure_events() if e.step_key == "dbt_models"]
    error = failure.step_failure_data.error.message
    assert "not_null_stg_shop__events_customer_id" in error and "dbt.log" in error
    with connect(landed.duckdb_path) as con:
        failed = one(
            con,
            "select check_name from audit.validations where source = 'dbt' and not success",
        )
    assert failed[0] == "not_null_stg_shop__events_customer_id"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda raw: raw.update(table="raw.events where 1=1; copy raw.events to '/tmp/x'"),
         "'table' must be schema.table"),
        (lambda raw: raw["expectations"].append(
            {"type": "expect_column_values_to_not_be_null",
             "kwargs": {"column": "price", "row_condition": "price.sum() > 0",
                        "condition_parser": "pandas"}}), "Call is not allowed"),
        (lambda raw: raw["expectations"].append(
            {"type": "expect_column_values_to_not_be_null",
             "kwargs": {"column": "price", "row_condition": "__class__ == 1",
                        "condition_parser": "pandas"}}), "column '__class__' is not allowed"),
        (lambda raw: raw["expectations"].append(
            {"type": "expect_column_values_to_not_be_null",
             "kwargs": {"column": "price", "row_condition": 'event_type == "view"',
                        "condition_parser": "spark"}}), "condition_parser must be 'pandas'"),
    ],
)  # fmt: skip
def test_a_suite_file_cannot_carry_sql_or_code(tmp_path, edit, message):
    with pytest.raises(quality.SuiteError, match=re.escape(message)):
        _suite_copy(tmp_path, "raw_events", edit)


def test_a_conditioned_expectation_with_comparisons_and_lists_loads(tmp_path):
    def edit(raw):
        raw["expectations"].append(
            {"type": "expect_column_values_to_not_be_null",
             "kwargs": {"column": "price", "condition_parser": "pandas",
                        "row_condition": 'event_type in ["view", "cart"] and not (price < 0)'}}
        )  # fmt: skip

    assert _suite_copy(tmp_path, "raw_events", edit).expectations


def test_an_optional_input_not_supplied_passes_as_not_supplied_and_a_required_one_fails():
    import pandas as pd

    suites = {s.name: s for s in quality.load_suites(EXPECTATIONS_DIR)}
    assert suites["raw_customers"].optional and suites["raw_products"].optional
    assert not suites["raw_events"].optional
    absent = quality.validate(pd.DataFrame({"customer_id": []}), suites["raw_customers"])
    assert absent and all(o.success and "no rows" in o.observed for o in absent)
    empty = quality.validate(pd.DataFrame({"event_id": []}), suites["raw_events"])
    row_count = [o for o in empty if o.expectation.type == quality.ROW_COUNT]
    assert row_count and not row_count[0].success


def test_the_row_count_is_judged_on_the_table_not_on_the_sample():
    import dataclasses

    import pandas as pd

    base = quality.load_suite(EXPECTATIONS_DIR / "raw_events.json")
    count = next(e for e in base.expectations if e.type == quality.ROW_COUNT)
    bounded = dataclasses.replace(count, kwargs={"min_value": 1, "max_value": 1000})
    suite = dataclasses.replace(base, expectations=(bounded,))
    sample = pd.DataFrame({"x": range(100)})
    sample.attrs["table_rows"] = 5000  # a 100-row sample of a 5,000-row table
    (outcome,) = quality.validate(sample, suite)
    assert outcome.observed == 5000 and not outcome.success  # the table breaks the bound
    sample.attrs["table_rows"] = 800
    (outcome,) = quality.validate(sample, suite)
    assert outcome.observed == 800 and outcome.success


def test_the_daily_build_checks_every_row_after_a_failure_and_once_a_week():
    """The daily dbt build checks only the keys it wrote unless the last build had a failing
    test (what it found stays in the table) or no build checked every row for a week."""
    import datetime as dt

    import duckdb

    from segmentation_dagster.core import audit

    con = duckdb.connect()
    now = dt.datetime(2026, 12, 1, 6)
    assert "no dbt build checked every row" in audit.whole_table_checks_due(con, now)

    def build(run: str, suite: str, passed: bool, at: dt.datetime) -> None:
        audit.append_audit(con, [audit.AuditRow("m", "dbt", suite, "t1", True),
                                 audit.AuditRow("m", "dbt", suite, "t2", passed)], run)  # fmt: skip
        con.execute("update audit.validations set validated_at = ? where run_id = ?", [at, run])

    build("loop", audit.DBT_WHOLE, True, now - dt.timedelta(days=2))
    assert audit.whole_table_checks_due(con, now) is None
    build("day1", "dbt", False, now - dt.timedelta(days=1))
    assert "failing test" in audit.whole_table_checks_due(con, now)
    build("day2", audit.DBT_WHOLE, True, now)  # the next build checked every row and passed
    assert audit.whole_table_checks_due(con, now) is None
    assert "in the last 7 days" in audit.whole_table_checks_due(con, now + dt.timedelta(days=8))
