"""The sources file's expressions: every documented function works, everything else is refused,
and what runs is the checked tree with quoted column names."""

import duckdb
import pytest

from segmentation_dagster.core.sources import (
    ALLOWED_FUNCTIONS,
    SourceConfigError,
    UnknownColumnError,
    check_csv_options,
    load_mapping,
    parse_expression,
)

WHERE = "sources.yml: events.columns.customer_id"
EXAMPLES = [(name, ex) for family in ALLOWED_FUNCTIONS.values() for name, ex in family.items()]
COLUMNS = {"a": "a", "b": "b", "n": "n"}


@pytest.fixture(scope="module")
def table():
    con = duckdb.connect()
    con.execute("create table f as select '20260801' a, timestamp '2026-08-01 10:00' b, 2.5 n")
    yield con
    con.close()


@pytest.mark.parametrize(("name", "example"), EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_every_documented_function_is_accepted_and_runs(table, name, example):
    sql = parse_expression(example, WHERE).render(COLUMNS)
    assert len(table.execute(f"select {sql} from f").fetchall()) == 1


def test_rendering_quotes_every_column_with_the_files_own_name():
    e = parse_expression("lower(Cust_No) || '-' || line", WHERE)
    assert e.render({"cust_no": "CUST_NO", "line": "line"}) == 'LOWER("CUST_NO") || \'-\' || "line"'


def test_a_hostile_column_name_stays_one_identifier():
    name = "x\") || (select content from read_text('/etc/passwd')) || (\""
    sql = parse_expression("x", WHERE).render({"x": name})
    con = duckdb.connect()
    con.execute(f'create table t ("{name.replace(chr(34), chr(34) * 2)}" varchar)')
    con.execute("insert into t values ('ok')")
    assert con.execute(f"select {sql} from t").fetchall() == [("ok",)]


def test_a_column_the_file_lacks_is_named():
    with pytest.raises(UnknownColumnError, match=r"customer_id: column cust_nr is not in the file"):
        parse_expression("cust_nr", WHERE).render({"cust_no": "cust_no"})


def test_comments_are_dropped_and_only_the_checked_tree_runs():
    e = parse_expression("upper(a) /* comment */ -- another", WHERE)
    assert e.render(COLUMNS) == 'UPPER("a")'


def test_a_quote_inside_a_literal_cannot_end_it():
    sql = parse_expression("'a'' || (select 1) || '''", WHERE).render(COLUMNS)
    assert duckdb.sql(f"select {sql}").fetchall() == [("a' || (select 1) || '",)]


def test_row_number_is_allowed_only_bare():
    assert parse_expression("row_number() over ()", WHERE).numbers_rows
    with pytest.raises(SourceConfigError, match="row_number\\(\\) needs over \\(\\)"):
        parse_expression("row_number()", WHERE)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"sep": ";"}, {"delim": ";"}),
        ({"delim": "\t", "header": False, "skip": 2}, {"delim": "\t", "header": False, "skip": 2}),
        ({"encoding": "Latin-1", "compression": "GZIP"}, {"encoding": "latin-1",
                                                         "compression": "gzip"}),
        ({"decimal_separator": ",", "dateformat": "%d.%m.%Y"},
         {"decimal_separator": ",", "dateformat": "%d.%m.%Y"}),
    ],
)  # fmt: skip
def test_allowed_csv_options_are_typed(options, expected):
    assert check_csv_options(options, "sources.yml: events.csv") == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("events: [1]\n", "events: expected 'columns:' and/or 'csv:'"),
        ("events:\n  columns: [a]\n", "events.columns: expected column: expression"),
        ("events:\n  columns:\n    event_id: [x]\n", "events.columns.event_id: expected an SQL"),
        ("events:\n  csv: x\n", "events.csv: expected a mapping of options"),
        ("orders:\n  columns: {}\n", "unknown kind 'orders'"),
    ],
)
def test_a_malformed_sources_file_is_named(tmp_path, text, problem):
    f = tmp_path / "sources.yml"
    f.write_text(text)
    with pytest.raises(SourceConfigError) as e:
        load_mapping(f)
    assert str(e.value).startswith(f"{f}: ") and problem in str(e.value)
