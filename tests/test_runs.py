"""One way to run a job from Python (segmentation_dagster.runs.execute), on a real instance."""

import os

import dagster as dg

from segmentation_dagster.runs import PID_TAG, execute


@dg.asset
def fine() -> None:
    print("noise a step prints")


@dg.asset(deps=[fine])
def broken() -> None:
    try:
        int("x")
    except ValueError as e:  # raised from a detail: the message is the step's own
        raise ValueError("the reason the step failed") from e


DEFS = dg.Definitions(
    assets=[fine, broken],
    jobs=[
        dg.define_asset_job("good", selection=[fine]),
        dg.define_asset_job("bad", selection=[fine, broken]),
    ],
    executor=dg.in_process_executor,
)


def test_a_failed_step_is_reported_by_name_with_its_error_and_the_run_is_tagged(capsys):
    with dg.DagsterInstance.ephemeral() as instance:
        run = execute(DEFS, "bad", instance, tags={"x": "y"}, capture_stdout=True)
        tags = instance.get_run_by_id(run.run_id).tags
    assert not run.success and run.job == "bad"
    [(step, message)] = run.failures
    # the step's own error, not Dagster's wrapper ("Error occurred while executing op ...")
    assert step == "broken" and message == "ValueError: the reason the step failed"
    assert run.failure_summary().startswith("broken: ")
    assert tags["x"] == "y" and PID_TAG in tags
    assert "noise a step prints" not in capsys.readouterr().out


class Unstartable(dg.ConfigurableResource):
    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        raise ValueError("/cfg/warehouse.yml: memory_limit: not a size")


@dg.asset
def needs_it(store: Unstartable) -> None:
    pass


def test_a_resource_that_cannot_start_is_reported_with_its_own_error():
    defs = dg.Definitions(
        assets=[needs_it], resources={"store": Unstartable()}, executor=dg.in_process_executor,
        jobs=[dg.define_asset_job("needs", selection=[needs_it])],
    )  # fmt: skip
    with dg.DagsterInstance.ephemeral() as instance:
        run = execute(defs, "needs", instance, capture_stdout=True)
    assert not run.success
    assert any("/cfg/warehouse.yml: memory_limit: not a size" in m for _, m in run.failures), (
        run.failures
    )


def test_a_good_run_succeeds_and_prints_what_its_steps_print(capsys):
    with dg.DagsterInstance.ephemeral() as instance:
        run = execute(DEFS, "good", instance)
    assert run.success and run.failures == () and run.seconds > 0
    assert run.failure_summary() == "see UI"
    assert "noise a step prints" in capsys.readouterr().out


def test_full_refresh_is_run_config_every_duckdb_job_accepts():
    """`segmentation run --full-refresh` passes FULL_REFRESH as the steps' run config: each job
    it may run must accept it (checked by Dagster against the jobs' own config schema)."""
    from dagster._core.system_config.objects import ResolvedRunConfig

    from segmentation_dagster import cli
    from segmentation_dagster.definitions import defs

    assert cli.build_parser().parse_args(["run", "--full-refresh"]).full_refresh
    for job in ("segmentation_job", "daily_refresh_job"):
        assert cli.builds_dbt_models(defs, job)
        config = ResolvedRunConfig.build(defs.resolve_job_def(job), {"ops": cli.FULL_REFRESH})
        assert config.ops["dbt_models"].config["full_refresh"] is True
    # a job without the dbt step is refused before it runs, not failed on its config
    assert not cli.builds_dbt_models(defs, "resegmentation_job")
    assert not cli.builds_dbt_models(defs, "spark_segmentation_job")


def test_the_next_step_names_the_instance_and_data_folder_the_runs_are_in(tmp_path, monkeypatch):
    """`make ui` shows the Makefile's instance and data folder: after runs elsewhere the
    summary's hint is a command that shows them (quoted: a path may hold spaces), and never
    prints a key."""
    import shlex

    from segmentation_dagster import cli
    from segmentation_dagster.core import settings
    from segmentation_dagster.core.settings import Paths

    for k in [k for k in os.environ if k.startswith("SEGMENTATION_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("DAGSTER_HOME", str(settings.REPO_ROOT / ".dagster_home"))
    monkeypatch.setenv("SEGMENTATION_DATA_DIR", str(settings.REPO_ROOT / "data"))
    assert cli.ui_command(Paths.from_env()) == "make ui"
    mine = tmp_path / "my shop"
    monkeypatch.setenv("DAGSTER_HOME", str(mine / "dagster_home"))
    monkeypatch.setenv("SEGMENTATION_DATA_DIR", str(mine))
    monkeypatch.setenv("SEGMENTATION_PSEUDONYM_KEY", "a-secret-key-of-the-shop")
    hint = cli.ui_command(Paths.from_env())
    words = shlex.split(hint)
    assert words[:2] == ["cd", str(settings.REPO_ROOT)]
    assert f"DAGSTER_HOME={mine}/dagster_home" in words and f"SEGMENTATION_DATA_DIR={mine}" in words
    assert words[-1] == "ui" and words[-2].endswith("/segmentation")
    assert "a-secret-key-of-the-shop" not in hint


def test_full_refresh_of_a_job_without_dbt_is_refused_before_any_demo_data_is_made(
    paths, tmp_path, monkeypatch
):
    from segmentation_dagster import cli

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    assert cli.main(["run", "--job", "resegmentation_job", "--full-refresh"]) == 2
    assert not (paths.landing_dir / "events").exists()
