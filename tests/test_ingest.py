import polars as pl
import pytest

from segmentation_dagster.core import ingest
from segmentation_dagster.core.warehouse import connect, one
from segmentation_dagster.demo import simulate

CFG = simulate.DemoConfig(n_customers=300, days=10, seed=1)


@pytest.fixture
def landed(paths):
    simulate.generate(CFG, paths.landing_dir, paths.truth_dir)
    return paths


def _count(paths, sql):
    with connect(paths.duckdb_path) as con:
        return one(con, sql)[0]


def test_loading_twice_adds_nothing(landed):
    with connect(landed.duckdb_path) as con:
        first = ingest.load_kind(con, landed.landing_dir, "events")
        second = ingest.load_kind(con, landed.landing_dir, "events")
    assert len(first.loaded) == CFG.days and first.rows_inserted == first.table_rows > 0
    assert second.rows_inserted == 0 and len(second.skipped) == CFG.days
    assert second.table_rows == first.table_rows
    assert _count(landed, "select count(*) from raw.load_manifest where status = 'loaded'") == 10


def test_landed_files_are_never_modified_or_deleted(landed):
    files = sorted((landed.landing_dir / "events").iterdir())
    before = {f: ingest.sha256_of(f) for f in files}
    with connect(landed.duckdb_path) as con:
        ingest.load_kind(con, landed.landing_dir, "events")
    assert {
        f: ingest.sha256_of(f) for f in sorted((landed.landing_dir / "events").iterdir())
    } == before


def test_redelivered_file_replaces_its_rows(landed):
    with connect(landed.duckdb_path) as con:
        ingest.load_kind(con, landed.landing_dir, "events")
    f = sorted((landed.landing_dir / "events").iterdir())[3]
    df = pl.read_parquet(f)
    df.head(5).write_parquet(f)  # a corrected, smaller delivery under the same name
    with connect(landed.duckdb_path) as con:
        report = ingest.load_kind(con, landed.landing_dir, "events")
        n = one(con, "select count(*) from raw.events where _source_file = ?", [f.name])[0]
    assert report.replaced == [f.name]
    assert n == 5


def test_file_missing_a_required_column_is_rejected_by_name_and_others_load(landed):
    bad = landed.landing_dir / "events" / "events_broken.parquet"
    pl.DataFrame({"event_id": [1], "event_ts": ["2026-01-01"]}).write_parquet(bad)
    with connect(landed.duckdb_path) as con:
        report = ingest.load_kind(con, landed.landing_dir, "events")
        status = one(
            con, "select status, error from raw.load_manifest where file_name = ?", [bad.name]
        )
    assert "events_broken.parquet" in report.rejected
    assert "missing required column(s) customer_id, event_type" in report.rejected[bad.name]
    assert status[0] == "rejected" and "customer_id" in status[1]
    assert len(report.loaded) == CFG.days
    assert bad.exists()


def test_a_rejected_file_is_read_again_once_the_mapping_changes_and_only_then(landed, tmp_path):
    from segmentation_dagster.core.sources import load_mapping

    good = sorted((landed.landing_dir / "events").iterdir())[0]
    odd = landed.landing_dir / "events" / "events_export.parquet"  # another column name
    export = pl.read_parquet(good).rename({"customer_id": "client"})
    export.with_columns(pl.col("event_id") + 10**9).write_parquet(odd)  # events of its own
    with connect(landed.duckdb_path) as con:
        first = ingest.load_kind(con, landed.landing_dir, "events")
        again = ingest.load_kind(con, landed.landing_dir, "events")
        assert odd.name in first.rejected and not again.rejected and not again.rows_inserted
        assert "customer_id" in again.rejected_before[odd.name]  # skipped, and says why
        spec = tmp_path / "sources.yml"
        spec.write_text("events:\n  columns:\n    customer_id: client\n")
        fixed = ingest.load_kind(con, landed.landing_dir, "events", load_mapping(spec))
        n = one(con, "select count(*) from raw.events where _source_file = ?", [odd.name])[0]
        status = one(con, "select status from raw.load_manifest where file_name = ?", [odd.name])
        after = ingest.load_kind(con, landed.landing_dir, "events", load_mapping(spec))
    assert fixed.loaded == [odd.name] and n == export.height and status[0] == "loaded"
    assert not after.loaded and not after.rejected_before and odd.name in after.skipped


def test_csv_files_load_like_parquet(paths):
    cfg = simulate.DemoConfig(n_customers=200, days=5, file_format="csv")
    simulate.generate(cfg, paths.landing_dir, paths.truth_dir)
    with connect(paths.duckdb_path) as con:
        report = ingest.load_kind(con, paths.landing_dir, "events")
        types = dict(con.execute("describe raw.events").fetchall()[i][:2] for i in range(4))
    assert len(report.loaded) == 5 and not report.rejected
    assert types["event_ts"] == "TIMESTAMP"


@pytest.mark.parametrize(
    ("name", "text", "encoding"),
    [
        ("comma.csv", "{h}\n{r}\n", "utf-8"),
        ("semicolon.csv", "{h}\n{r}\n", "utf-8"),
        ("crlf.csv", "{h}\r\n{r}\r\n", "utf-8"),
        ("bom.csv", "\ufeff{h}\n{r}\n", "utf-8"),
        ("tab.csv", "{h}\n{r}\n", "utf-8"),
        ("latin1.csv", "{h}\n{r}\n", "latin-1"),
    ],
)
def test_csv_dialects_load_the_same_rows_and_number_bad_rows_alike(paths, name, text, encoding):
    # the reader is pinned to what DuckDB's sniffer found (the file sniffed once): every
    # dialect must still give the rows the file holds, and quarantine row numbers in file order
    sep = {"semicolon.csv": ";", "tab.csv": "\t"}.get(name, ",")
    header = sep.join(["event_id", "customer_id", "event_ts", "event_type", 'note\'s "x"'])
    rows = [
        ["e1", "c1", "2026-01-02 10:00:00", "view", f'"a{sep} quoted ""note"""'],
        ["e2", "c2", "not a time", "view", "b"],
        ["e3", "c\u00fc", "2026-01-02 11:00:00", "purchase", ""],
    ]
    folder = paths.landing_dir / "events"
    folder.mkdir(parents=True)
    body = text.format(h=header, r="\n".join(sep.join(r) for r in rows))
    if name == "crlf.csv":
        body = body.replace("\n", "\r\n").replace("\r\r\n", "\r\n")
    (folder / name).write_bytes(body.encode(encoding))
    mapping = None
    if encoding != "utf-8":
        mapping_file = paths.landing_dir / "sources.yml"
        mapping_file.write_text("events:\n  csv:\n    encoding: latin-1\n")
        from segmentation_dagster.core.sources import load_mapping

        mapping = load_mapping(mapping_file)
    with connect(paths.duckdb_path) as con:
        report = ingest.load_kind(con, paths.landing_dir, "events", mapping)
        loaded = con.execute(
            "select event_id, customer_id, event_ts::varchar from raw.events order by 1"
        ).fetchall()
        bad = con.execute("select row_number from raw.quarantine").fetchall()
    assert not report.rejected, report.rejected
    assert loaded == [("e1", "c1", "2026-01-02 10:00:00"), ("e3", "c\u00fc", "2026-01-02 11:00:00")]
    assert bad == [(2,)]


def test_optional_inputs_may_be_absent(paths):
    with connect(paths.duckdb_path) as con:
        report = ingest.load_kind(con, paths.landing_dir, "customers")
    assert report.table_rows == 0 and not report.rejected


@pytest.mark.parametrize("together", [True, False])
def test_a_later_customers_file_is_a_newer_version_whether_it_lands_with_or_after(paths, together):
    folder = paths.landing_dir / "customers"
    folder.mkdir(parents=True)
    first = pl.DataFrame({"customer_id": ["a", "b"], "country": ["DE", "FR"]})
    update = pl.DataFrame({"customer_id": ["a", "a", "c"], "country": ["AT", "IT", "ES"]})
    first.write_csv(folder / "customers_1.csv")
    with connect(paths.duckdb_path) as con:
        if not together:
            ingest.load_kind(con, paths.landing_dir, "customers")
        update.write_csv(folder / "customers_2.csv")
        report = ingest.load_kind(con, paths.landing_dir, "customers")
        rows = con.execute(
            "select customer_id, country from raw.customers "
            "qualify row_number() over (partition by customer_id "
            "order by _loaded_at desc, _source_file desc) = 1 order by 1"
        ).fetchall()
        reasons = con.execute("select reason from raw.quarantine").fetchall()
    # a repeat inside one file is ambiguous (quarantined); the update of 'a' in a later file is
    # kept either way, and the latest version wins
    assert reasons == [("duplicate customer_id in file",)]
    assert rows == [("a", "AT"), ("b", "FR"), ("c", "ES")]
    assert report.rows_quarantined == 1


def test_event_type_synonyms_load_as_the_contracts_names(paths):
    folder = paths.landing_dir / "events"
    folder.mkdir(parents=True)
    (folder / "clicks.csv").write_text(
        "event_id,customer_id,event_ts,event_type\n"
        "1,a,2026-08-01 10:00,Page_View\n2,a,2026-08-01 10:01,add_to_cart\n"
        "3,a,2026-08-01 10:02, Order \n4,a,2026-08-01 10:03,site_search\n"
        "5,a,2026-08-01 10:04,rating\n6,a,2026-08-01 10:05,teleport\n"
    )
    with connect(paths.duckdb_path) as con:
        ingest.load_kind(con, paths.landing_dir, "events")
        loaded = con.execute("select event_id, event_type from raw.events order by 1").fetchall()
        reasons = con.execute("select reason from raw.quarantine").fetchall()
    assert loaded == [("1", "view"), ("2", "cart"), ("3", "purchase"), ("4", "search"),
                      ("5", "review")]  # fmt: skip
    assert reasons == [("unknown event_type",)]
