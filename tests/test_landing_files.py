"""Which files (days) are loaded, and reading one again, from the UI: each landing file is a
partition of `landing_file` (real DuckDB, real ingestion, a real Dagster instance)."""

import dagster as dg
import polars as pl
import pytest

from segmentation_dagster.core.ingest import LandingFileError
from segmentation_dagster.core.warehouse import connect, one
from segmentation_dagster.demo import simulate
from tests.conftest import all_assets, environment_of, resources_for


def test_each_loaded_file_is_a_partition_and_one_can_be_read_again(paths):
    simulate.generate(simulate.DemoConfig(n_customers=200, days=5, seed=2), paths.landing_dir,
                      paths.truth_dir)  # fmt: skip
    with dg.instance_for_test() as instance, environment_of(paths):
        assets, resources = all_assets(), resources_for(paths)
        assert dg.materialize(assets, resources=resources, instance=instance,
                              selection="raw_events").success  # fmt: skip
        keys = instance.get_dynamic_partitions("landing_files")
        days = sorted(f.name for f in (paths.landing_dir / "events").iterdir())
        assert keys == [f"events/{d}" for d in days]
        # each load is that partition's materialisation: the UI shows every file (day) green
        done = instance.get_materialized_partitions(dg.AssetKey("landing_file"))
        assert done == set(keys)

        # the limits change: the file that was fine is now partly out of bounds; reading it
        # again (one partition, unchanged content) applies the new rule to it
        first = paths.landing_dir / "events" / days[0]
        n_rows = pl.read_parquet(first).height
        with connect(paths.duckdb_path) as con:
            before = one(con, "select count(*) from raw.events where _source_file = ?",
                         [days[0]])[0]  # fmt: skip
        assert before == n_rows
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SEGMENTATION_MAX_PRICE", "1")
            result = dg.materialize(assets, resources=resources, instance=instance,
                                    selection="landing_file", partition_key=keys[0])  # fmt: skip
        assert result.success
        meta = result.asset_materializations_for_node("landing_file")[0].metadata
        assert meta["rows_quarantined"].value > 0
        with connect(paths.duckdb_path) as con:
            after = one(con, "select count(*) from raw.events where _source_file = ?",
                        [days[0]])[0]  # fmt: skip
            others = one(con, "select count(*) from raw.events where _source_file <> ?",
                         [days[0]])[0]  # fmt: skip
        assert after == meta["rows_loaded"].value < before and others > 0

        with pytest.raises(LandingFileError, match="no readable landing file named"):
            evil = "events/../../etc/passwd"  # a key someone added by hand: not a landed file
            instance.add_dynamic_partitions("landing_files", [evil])
            dg.materialize(assets, resources=resources, instance=instance,
                           selection="landing_file", partition_key=evil)  # fmt: skip
