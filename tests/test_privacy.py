"""Privacy: keyed pseudonyms in exports, small groups suppressed, erasure that survives a full
re-ingest (real DuckDB, dbt, the whole asset graph)."""

import os
import stat

import duckdb
import polars as pl
import pytest

from segmentation_dagster.core import ingest, privacy, project, text, value
from segmentation_dagster.demo import simulate
from tests.conftest import materialize_all


def test_pseudonyms_are_keyed_stable_and_the_key_file_is_private(tmp_path, monkeypatch):
    monkeypatch.delenv(privacy.KEY_ENV, raising=False)
    key = privacy.key(tmp_path)
    path = tmp_path / "privacy" / "pseudonym.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and privacy.key(tmp_path) == key
    a = privacy.pseudonyms(["c1", "c2", "c1"], key)
    assert a[0] == a[2] != a[1] and all(len(p) == 32 for p in a)
    assert privacy.pseudonyms(["c1"], b"another key of 16+ chars")[0] != a[0]
    monkeypatch.setenv(privacy.KEY_ENV, "short")
    with pytest.raises(privacy.PrivacyError, match="at least 16"):
        privacy.key(tmp_path)


def test_small_groups_are_suppressed_and_the_setting_is_checked(tmp_path):
    df = pl.DataFrame({"segment_id": [1, 2, 3], "size": [500, 4, 3], "description": list("abc")})
    small = privacy.small_segments(dict(df.select("segment_id", "size").iter_rows()), 10)
    out = privacy.suppress(df, small, ["size", "description"])
    assert out.row(0) == (1, 500, "a") and out.row(1) == (2, None, privacy.SUPPRESSED)
    # one small segment alone would be the total less the others: the next smallest goes too
    lone = privacy.small_segments({1: 500, 2: 4, 3: 90}, 10)
    assert lone == {2, 3}
    bad = tmp_path / "segmentation.yml"
    bad.write_text("privacy: {min_group_size: 0}\n")
    with pytest.raises(project.ProjectConfigError, match="privacy.*min_group_size"):
        project.load(bad)
    bad.write_text("privacy: {export_ids: emails}\n")
    with pytest.raises(project.ProjectConfigError, match="privacy: export_ids"):
        project.load(bad)


def test_a_table_grouped_by_an_earlier_assignment_is_judged_by_its_own_groups_too():
    # spend per segment of the assignment before the outcomes: segment 1 had 3 of today's 50
    # customers then, segment 7 is retired since, segment 2 is big in both
    today = {1: 50, 2: 80}
    table = pl.DataFrame({"segment_id": [1, 2, 7], "customers": [3, 60, 2],
                          "actual": [30.0, 900.0, 12.0]})  # fmt: skip
    small = privacy.small_groups(today, table, 5)
    shown = privacy.suppress(table, small, ["customers", "actual"])
    assert shown.drop("note").rows() == [(1, None, None), (2, 60, 900.0), (7, None, None)]
    # numbers alone cannot say why they are blank: a note does
    assert shown["note"].to_list() == [privacy.SUPPRESSED, None, privacy.SUPPRESSED]
    # and a segment small today stays suppressed however its earlier group looked
    assert privacy.small_groups({1: 50, 2: 4}, table, 5) == {1, 2, 7}
    # interests describe a segment's writers only: 2 writers of a 50-customer segment are 2
    # (and one hidden row would be the total less the other: the next smallest is hidden too)
    writers = pl.DataFrame({"segment_id": [1, 2, 3], "writers": [2, 40, 30]})
    assert privacy.small_groups({**today, 3: 70}, writers, 5, "writers") == {1, 3}
    # the customers in no segment then (segment_id null) are a group too
    for n, shown in ((3, [(2, 60), (7, None), (None, None)]),
                     (40, [(2, 60), (7, 50), (None, 40)])):  # fmt: skip
        table = pl.DataFrame({"segment_id": [2, 7, None], "customers": [60, 50, n]})
        small = privacy.small_groups({2: 80, 7: 60}, table, 5)
        assert (None in small) == (n < 5)
        assert privacy.suppress(table, small, ["customers"]).select(table.columns).rows() == shown
    # a lone small segment beside the unsegmented: the smallest other row goes with it
    table = pl.DataFrame({"segment_id": [1, 2, None], "customers": [4, 60, 30]})
    assert privacy.small_groups(today, table, 5) == {1, None}


def _everywhere(p, victim: str, mark: str) -> list[str]:
    """Every place the victim's id (as a customer id) or pseudonym (anywhere) still appears."""
    found = []
    con = duckdb.connect(str(p.duckdb_path), read_only=True)
    try:
        for schema, table, column, typ in con.execute(
            "select c.table_schema, c.table_name, c.column_name, c.data_type "
            "from information_schema.columns c join information_schema.tables t "
            "using (table_schema, table_name) where t.table_type = 'BASE TABLE'"
        ).fetchall():
            name = f'"{schema}"."{table}"'
            if column == "customer_id":
                n = con.execute(f"select count(*) from {name} where customer_id::varchar = ?",
                                [victim]).fetchall()[0][0]  # fmt: skip
                found += [f"{schema}.{table}"] * bool(n)
            if typ in ("VARCHAR", "JSON"):
                n = con.execute(f'select count(*) from {name} where "{column}"::varchar like ?',
                                [f"%{mark}%"]).fetchall()[0][0]  # fmt: skip
                found += [f"{schema}.{table}.{column} (pseudonym)"] * bool(n)
        n = con.execute("select count(*) from raw.quarantine where record->>'customer_id' = ?",
                        [victim]).fetchall()[0][0]  # fmt: skip
        found += ["raw.quarantine"] * bool(n)
    finally:
        con.close()
    for folder in (p.model_dir, p.export_dir, p.report_dir):
        for f in folder.iterdir():
            if f.suffix in (".parquet", ".csv"):
                df = pl.read_parquet(f) if f.suffix == ".parquet" else pl.read_csv(f)
                for col in ("customer_id", privacy.PSEUDONYM):
                    if col in df.columns and (df[col].cast(pl.String) == (
                        victim if col == "customer_id" else mark
                    )).any():  # fmt: skip
                        found.append(str(f))
            elif mark.encode() in f.read_bytes():
                found.append(str(f))
    return found


@pytest.mark.slow  # two runs of the whole graph
def test_a_forgotten_customer_is_gone_everywhere_and_stays_gone(paths, monkeypatch):
    cfg = simulate.DemoConfig(n_customers=900, days=40, seed=11)
    simulate.generate(cfg, paths.landing_dir, paths.truth_dir)
    events = sorted((paths.landing_dir / "events").iterdir())
    victim = str(pl.read_parquet(events[-1])["customer_id"][0])
    # one of the victim's rows is bad: it sits in the quarantine with its raw values
    bad = pl.read_parquet(events[-1]).filter(pl.col("customer_id").cast(pl.String) == victim)
    bad.head(1).with_columns(event_id=pl.col("event_id") + 10**9, price=pl.lit(-1.0)).write_parquet(
        paths.landing_dir / "events" / "zz_late.parquet"
    )
    landed = {f: f.read_bytes() for f in (paths.landing_dir / "events").iterdir()}
    theirs = sum(
        pl.read_parquet(f).filter(pl.col("customer_id").cast(pl.String) == victim).height
        for f in landed
    )
    assert materialize_all(paths).success
    mark = privacy.pseudonyms([victim], privacy.key(paths.data_dir))[0]
    exported = pl.read_parquet(sorted(paths.export_dir.glob("segments_*_v0001.parquet"))[0])
    assert "customer_id" not in exported.columns  # pseudonyms by default
    assert mark in exported[privacy.PSEUDONYM].to_list()
    assert "raw.events" in _everywhere(paths, victim, mark)  # the check can see them

    from segmentation_dagster.cli import main

    kept = [paths.model_dir / text.MODELS_FILE, paths.model_dir / value.MODELS_FILE]
    assert all(f.is_file() for f in kept)
    assert main(["forget", victim]) == 0
    assert _everywhere(paths, victim, mark) == []
    assert not any(f.exists() for f in kept)  # models that learnt from them are refitted
    assert {f: f.read_bytes() for f in landed} == landed  # landed files are never edited

    # a full re-ingest from the landing files: a new warehouse, everything rebuilt
    os.remove(paths.duckdb_path)
    result = materialize_all(paths)
    assert result.success
    raw = {m.asset_key.to_user_string(): m for m in result.get_asset_materialization_events()}
    assert raw["raw_events"].materialization.metadata["rows_erased"].value == theirs
    assert _everywhere(paths, victim, mark) == []


def test_ingestion_drops_erased_customers_before_anything_is_kept(paths):
    events = paths.landing_dir / "events"
    events.mkdir(parents=True)
    pl.DataFrame({
        "event_id": ["1", "2", "3"], "customer_id": ["keep", "gone", "gone"],
        "event_ts": ["2026-01-01 10:00:00"] * 3, "event_type": ["view", "view", "teleport"],
    }).write_csv(events / "day.csv")  # fmt: skip
    erased = privacy.forget_files(paths.data_dir, [], ["gone"])
    assert erased.rows == {}
    con = duckdb.connect(str(paths.duckdb_path))
    report = ingest.load_kind(
        con, paths.landing_dir, "events",
        erased=lambda ids: privacy.forgotten_among(ids, paths.data_dir),
    )  # fmt: skip
    assert report.rows_erased == 2 and report.rows_inserted == 1
    assert con.execute("select count(*) from raw.quarantine").fetchall()[0][0] == 0
    assert con.execute("select customer_id from raw.events").fetchall() == [("keep",)]


def test_forget_deletes_what_a_killed_export_left_and_nothing_else(tmp_path, monkeypatch):
    """A killed export leaves the whole list in a hidden temp file (DuckDB engine) or a hidden
    folder of Spark's parts: forget deletes both; other hidden files and links are left."""
    monkeypatch.setenv(privacy.KEY_ENV, "k" * 32)
    exports = tmp_path / "exports"
    spark_parts = exports / ".segments_2026-01-02_v0001.parquet.spark"
    spark_parts.mkdir(parents=True)
    pl.DataFrame({"customer_id": ["gone", "kept"]}).write_parquet(spark_parts / "part-0.parquet")
    temp = exports / ".segments_2026-01-02_v0001.csv.tmp"
    temp.write_text("customer_id\ngone\n")
    other = exports / ".keep_me"
    other.write_text("x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "data.parquet").write_bytes(b"x")
    (exports / ".segments_link.spark").symlink_to(outside)
    listed = exports / "segments_2026-01-01_v0001.parquet"
    pl.DataFrame({"customer_id": ["gone", "kept"], "segment_id": [1, 2]}).write_parquet(listed)
    erased = privacy.forget_files(tmp_path / "data", [exports], ["gone"])
    assert not spark_parts.exists() and not temp.exists()
    assert other.exists() and (outside / "data.parquet").exists()
    assert pl.read_parquet(listed)["customer_id"].to_list() == ["kept"]
    assert sum(1 for f in erased.files if "killed export" in f) == 2


def test_pseudonymise_in_duckdb_gives_the_pseudonyms_hmac_gives_in_the_same_order():
    import random

    ids = ["c1", "ü-ñ 名前", "", " spaced ", "12345", "x" * 300]
    rng = random.Random(0)
    ids += [f"cust-{rng.randrange(10**9)}" for _ in range(50_000)]  # order must survive
    df = pl.DataFrame({"segment_id": list(range(len(ids))), "customer_id": ids})
    for key in (b"sixteen chars ok", b"k" * 64, b"a key longer than the block " * 4):
        out = privacy.pseudonymise(df, key)
        assert out.columns == ["segment_id", privacy.PSEUDONYM]
        assert out[privacy.PSEUDONYM].to_list() == privacy.pseudonyms(ids, key)
        assert out["segment_id"].to_list() == df["segment_id"].to_list()


def test_a_null_id_has_no_pseudonym():
    df = pl.DataFrame({"customer_id": ["a", None]})
    with pytest.raises(privacy.PrivacyError, match="null"):
        privacy.pseudonymise(df, b"sixteen chars ok")


def test_forget_deletes_what_killed_model_saves_left(tmp_path, monkeypatch):
    """A registry snapshot's or a kept model's temp file (a killed save) holds customers' rows
    or what was fitted on them: forget deletes it with the export leftovers."""
    monkeypatch.setenv(privacy.KEY_ENV, "k" * 32)
    models = tmp_path / "models"
    models.mkdir()
    snapshot = models / ".reference_v0002.parquet.4242.tmp"
    pl.DataFrame({"customer_id": ["gone"]}).write_parquet(snapshot)
    fitted = models / f".{value.MODELS_FILE}.77.tmp"
    fitted.write_bytes(b"half a model")
    other = models / ".keep_me"
    other.write_text("x")
    erased = privacy.forget_files(tmp_path / "data", [models], ["gone"])
    assert not snapshot.exists() and not fitted.exists() and other.exists()
    assert sum(1 for f in erased.files if "killed export or save" in f) == 2
