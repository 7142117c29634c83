import dagster as dg

from segmentation_dagster.definitions import defs


def test_definitions_load_and_validate():
    dg.Definitions.validate_loadable(defs)
    job = defs.resolve_job_def("segmentation_job")
    assert job.executor_def.name == "in_process"


def test_every_asset_has_a_group_a_description_and_a_kind():
    graph = defs.resolve_asset_graph()
    groups = set()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        groups.add(node.group_name)
        assert node.description, key
        assert node.kinds, key
    assert {"ingestion", "transform", "segmentation"} <= groups


def test_dbt_sources_depend_on_the_ingestion_assets():
    graph = defs.resolve_asset_graph()
    parents = graph.get(dg.AssetKey("stg_shop__events")).parent_keys
    assert dg.AssetKey("raw_events") in parents
