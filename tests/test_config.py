"""One source of truth per configuration: each launchpad Config is derived from the core
dataclass it configures, so its defaults are the dataclass's and its values reach it."""

import json

import pytest

from segmentation_dagster.core import clustering, drift, lifecycle, policy, segments
from segmentation_dagster.defs.config import AssignmentConfig, SegmentationConfig, to_core
from segmentation_dagster.defs.monitoring.assets import DriftMonitorConfig
from segmentation_dagster.defs.transform.assets import DBT_VARS, BehaviourConfig


def test_launchpad_defaults_are_the_core_defaults():
    assert SegmentationConfig().selection() == clustering.SelectionConfig()
    assert SegmentationConfig().lifecycle() == lifecycle.LifecycleConfig()
    assert DriftMonitorConfig().drift_config() == drift.DriftConfig()
    assert AssignmentConfig().assignment() == segments.AssignmentConfig()


def test_launchpad_values_reach_the_core_dataclasses():
    cfg = SegmentationConfig(k_max=4, algorithms=["kmeans"], exclude_features=["x"], seed=3)
    selection = cfg.selection()
    assert (selection.k_max, selection.algorithms, selection.exclude) == (4, ("kmeans",), ("x",))
    assert cfg.lifecycle().seed == 3
    pinned = DriftMonitorConfig(per_column={"spend": ["psi", 0.2]}, margin=3.0).drift_config()
    assert pinned.per_column == {"spend": ("psi", 0.2)} and pinned.margin == 3.0
    assert AssignmentConfig(hysteresis=0.0).assignment().hysteresis == 0.0


def test_a_field_the_dataclass_lacks_is_an_error():
    with pytest.raises(TypeError, match="no field"):
        to_core(segments.AssignmentConfig, AssignmentConfig(), margin=1.0)


def test_dbt_vars_are_documented_with_the_dbt_projects_defaults():
    field = BehaviourConfig.model_fields["half_life_days"]
    assert field.default is None  # empty: dbt's own default applies
    assert f"(default {DBT_VARS['half_life_days']})" in field.description
    assert BehaviourConfig(half_life_days=10).dbt_vars() == {"half_life_days": 10}


def test_a_full_refresh_is_a_launchpad_option_and_a_date_is_only_a_date():
    args = BehaviourConfig(full_refresh=True, snapshot_date="2026-08-01").dbt_args()
    assert "--full-refresh" in args
    assert json.loads(args[args.index("--vars") + 1]) == {"snapshot_date": "2026-08-01"}
    assert "--full-refresh" not in BehaviourConfig().dbt_args()
    with pytest.raises(ValueError, match="pattern"):
        BehaviourConfig(snapshot_date="2026-08-01' or 1=1 --")


def test_launchpad_dbt_vars_are_checked_by_the_project_files_rules():
    from segmentation_dagster.core.project import ProjectConfigError

    bad = BehaviourConfig(snapshot_date="2026-13-01", half_life_days=-5, active_days=0)
    with pytest.raises(ProjectConfigError) as e:
        bad.dbt_args()
    lines = str(e.value).splitlines()
    assert [line.split(":")[2].strip() for line in lines] == [
        "snapshot_date", "half_life_days", "active_days"
    ]  # fmt: skip
    assert all(line.startswith("run config: features: ") for line in lines)


def test_the_drift_policy_is_read_from_one_place(monkeypatch):
    monkeypatch.delenv(policy.POLICY_ENV, raising=False)
    assert policy.PolicyConfig.from_env() == policy.PolicyConfig()
    monkeypatch.setenv(policy.POLICY_ENV, '{"cooldown_days": 1}')
    assert policy.PolicyConfig.from_env().cooldown_days == 1
    monkeypatch.setenv(policy.POLICY_ENV, '{"cooldown": 1}')
    with pytest.raises(ValueError, match="unknown field"):
        policy.PolicyConfig.from_env()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('{"k": "2"}', "SEGMENTATION_DRIFT_POLICY: policy: k: must be a whole number >= 1, got"),
        ('{"n": 0}', r"SEGMENTATION_DRIFT_POLICY: policy: n: must be a whole number in \[1, 100\]"),
        ('{"enter_threshold": NaN}', "enter_threshold: must be a finite number > 0, got nan"),
        ('{"exit_threshold": 2}', r"policy: exit_threshold: must be <= enter_threshold \(1.0\)"),
        ("[]", "JSON object"),
        ("{nope", "not JSON"),
    ],
)
def test_a_bad_drift_policy_fails_with_the_field_named(monkeypatch, value, message):
    monkeypatch.setenv(policy.POLICY_ENV, value)
    with pytest.raises(ValueError, match=message):
        policy.PolicyConfig.from_env()


def test_run_config_cannot_point_the_resources_at_other_files():
    from segmentation_dagster.defs.resources import default_resources

    for name, resource in default_resources().items():
        if name == "dbt":
            continue  # its folders are ignored: dbt runs with the project's own (dbt_runner)
        fields = set(type(resource).model_fields)
        assert not {f for f in fields if "path" in f or "dir" in f}, (name, fields)


def _project_file(tmp_path, monkeypatch, text: str):
    from segmentation_dagster.core import project

    path = tmp_path / "segmentation.yml"
    path.write_text(text)
    monkeypatch.setenv(project.PROJECT_ENV, str(path))
    monkeypatch.delenv(policy.POLICY_ENV, raising=False)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("selecton: {k_max: 5}", "unknown section(s) ['selecton']"),
        ("selection: {k_maximum: 5}", "selection: unknown key(s) ['k_maximum']"),
        ("selection: {k_max: many}", "selection: k_max:"),
        ("policy: {exit_threshold: 5}", "policy: "),
        ("features: {half_life_days: '30; drop'}", "features: half_life_days: must be a whole"),
        ("features: {no_such_var: 1}", "unknown dbt var 'no_such_var'"),
        ("features: {snapshot_date: 'yesterday'}", "snapshot_date: must be empty or a real date"),
        ("- a list", "expected a mapping of sections"),
        ("limits: {earliest_ts: 'last year'}", "limits: earliest_ts: must be a real date"),
        ("limits: {max_price: 0}", "limits: max_price: must be"),
    ],
)
def test_a_bad_project_file_names_the_file_section_and_key(tmp_path, monkeypatch, text, message):
    from segmentation_dagster.core import project

    path = _project_file(tmp_path, monkeypatch, text)
    with pytest.raises(project.ProjectConfigError) as err:
        project.load()
    assert str(path) in str(err.value) and message in str(err.value)


def test_the_project_file_reaches_every_run_and_the_launchpad_overrides_it(tmp_path, monkeypatch):
    from segmentation_dagster.core import project

    _project_file(tmp_path, monkeypatch, """
features: {active_days: 540, half_life_days: 45}
selection: {k_max: 6, exclude: [tenure_days]}
lifecycle: {promotion_margin: 0.05}
assignment: {hysteresis: 0.2}
drift: {sample_size: 1000}
policy: {cooldown_days: 2}
schedules: {refresh_cron: "0 5 * * *"}
""")  # fmt: skip
    cfg = project.load()
    selection = SegmentationConfig().selection(cfg.selection)
    assert selection.k_max == 6 and selection.exclude == ("tenure_days",)
    assert SegmentationConfig(k_max=4).selection(cfg.selection).k_max == 4  # one run
    assert SegmentationConfig().lifecycle(cfg.lifecycle, selection).promotion_margin == 0.05
    assert AssignmentConfig().assignment(cfg.assignment).hysteresis == 0.2
    assert DriftMonitorConfig().drift_config(cfg.drift).sample_size == 1000
    assert cfg.policy.cooldown_days == 2 and cfg.schedules.refresh_cron == "0 5 * * *"
    args = BehaviourConfig(half_life_days=10).dbt_args(cfg.features)
    assert json.loads(args[args.index("--vars") + 1]) == {"active_days": 540,
                                                          "half_life_days": 10}  # fmt: skip
    monkeypatch.setenv(policy.POLICY_ENV, '{"cooldown_days": 4}')
    assert project.load().policy.cooldown_days == 4  # the environment wins over the file


def test_the_environments_policy_wins_field_by_field_and_a_named_file_must_exist(
    tmp_path, monkeypatch
):
    from segmentation_dagster.core import project

    _project_file(tmp_path, monkeypatch, "policy: {cooldown_days: 5, retry_days: 4}\n")
    monkeypatch.setenv(policy.POLICY_ENV, '{"cooldown_days": 7}')  # the default value, set
    assert project.load().policy.cooldown_days == 7 and project.load().policy.retry_days == 4
    monkeypatch.setenv(project.PROJECT_ENV, str(tmp_path / "missing.yml"))
    with pytest.raises(project.ProjectConfigError, match="no such file"):
        project.load()


def test_lifecycle_keys_set_in_the_file_are_used():
    from segmentation_dagster.core import lifecycle

    base = lifecycle.LifecycleConfig(min_change_share=0.1, sample=1000)
    life = SegmentationConfig().lifecycle(base)
    assert life.min_change_share == 0.1 and life.sample == 1000
    assert (
        SegmentationConfig().lifecycle().min_change_share
        == clustering.SelectionConfig().min_segment_share
    )


def test_check_names_every_broken_file_and_run_refuses_before_loading_anything(
    paths, tmp_path, capsys
):
    from segmentation_dagster import cli

    config = tmp_path / "config"
    config.mkdir()
    assert cli.main(["check"]) == 0  # no files: the built-in defaults
    assert "no such file: the built-in defaults" in capsys.readouterr().out
    (config / "segmentation.yml").write_text("selection:\n  k_max: true\n")
    (config / "sources.yml").write_text(
        "events:\n  columns:\n    customer_id: a\n    customer_id: b\n"
    )
    # a misspelt feature: known from the features' contract, before any data exists
    (config / "playbooks.yml").write_text(
        "playbooks:\n  - {name: a, action: b, when: {monetery: {above: 1}}}\n"
    )
    assert cli.main(["check"]) == 1
    out = capsys.readouterr().out
    assert "segmentation.yml: selection: k_max: must be a whole number >= 2, got True" in out
    assert "sources.yml: line 4: duplicate key 'customer_id' (first on line 3)" in out
    assert "playbooks.yml: unknown feature(s) ['monetery'] in `when` (known: " in out
    assert cli.main(["run", "--no-demo"]) == 2
    err = capsys.readouterr().err
    assert err.count("configuration: ") == 3 and not paths.duckdb_path.exists()


def test_check_reads_the_landed_files_with_the_mapping_and_names_a_column_they_lack(
    paths, tmp_path, capsys
):
    from segmentation_dagster import cli

    sources = _landed(paths, tmp_path, "line_id,client,ordered_at\n1,a,2025-01-01\n",
                      "event_id: line_id\n    customer_id: client\n    event_ts: ordered_at\n"
                      "    event_type: \"'purchase'\"\n")  # fmt: skip
    assert cli.main(["check"]) == 0
    assert f"ok     {paths.landing_dir}  (the newest" in capsys.readouterr().out
    sources.write_text(sources.read_text().replace("client", "clinet"))  # a typo
    assert cli.main(["check"]) == 1
    out = capsys.readouterr().out
    assert "events/orders.csv: events.columns.customer_id: column clinet is not in the file" in out
    assert not paths.duckdb_path.exists()  # nothing was loaded


def test_check_groups_a_reason_many_files_share_and_notes_what_a_run_would_not_load(
    paths, tmp_path, capsys
):
    import os

    from segmentation_dagster import cli

    (tmp_path / "config").mkdir()
    events = paths.landing_dir / "events"
    events.mkdir(parents=True)
    for day in range(1, 26):  # 25 files: the check reads the newest 20 by modification time
        f = events / f"day_{day:02d}.csv"
        f.write_text(f"line_id,client,ordered_at,kind\n{day},a,2025-01-{day:02d},checkout\n"
                     f"{day + 100},b,2025-01-{day:02d},pageview\n")  # fmt: skip
        os.utime(f, (1_700_000_000 + day, 1_700_000_000 + day))
    os.utime(events / "day_01.csv", (1_800_000_000, 1_800_000_000))  # the newest file
    (paths.landing_dir / "orders.csv").write_text("a\n1\n")  # at the top: not read by a run
    (paths.landing_dir / "x\nok     all is fine.csv").write_text("a\n1\n")  # a fake line?
    sources = tmp_path / "config" / "sources.yml"
    sources.write_text("events:\n  columns:\n    event_id: line_id\n    customer_id: client\n"
                       "    event_ts: ordered_at\n    event_type: kind\n")  # fmt: skip
    assert cli.main(["check"]) == 0  # readable: the unknown types are a note, not an error
    out = capsys.readouterr().out
    assert "'checkout' (20)" in out and "pageview" not in out.split("NOTE")[-1].split(";")[0]
    assert "not read by a run: x?ok     all is fine.csv" in out
    assert not any(line.startswith("ok     all is fine") for line in out.splitlines())
    assert "not read by a run: orders.csv" in out
    sources.write_text(sources.read_text().replace("client", "clinet"))
    assert cli.main(["check"]) == 1
    out = capsys.readouterr().out
    # one line for the reason the 20 newest files share, naming the newest ones
    assert out.count("column clinet is not in the file") == 1, out
    assert "events: 20 files (day_07.csv, day_08.csv, day_09.csv and 17 more): " in out
    # by modification time: day_01 (touched last) is among them, day_02..day_06 are not
    assert "day_06.csv" not in out


def test_a_command_gives_an_instance_folder_without_settings_the_projects_own(
    paths, tmp_path, monkeypatch
):
    from segmentation_dagster import cli

    home = tmp_path / "my_dagster_home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with cli.cli_instance(paths) as instance:
        assert instance.get_settings("concurrency")["runs"]["max_concurrent_runs"] == 1
    assert (home / "dagster.yaml").read_text() == cli.INSTANCE_SETTINGS.read_text()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")  # the user's: kept
    with cli.cli_instance(paths):
        pass
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"


def test_check_reports_a_value_its_event_type_mapping_cannot_read_instead_of_crashing(
    paths, tmp_path, capsys
):
    from segmentation_dagster import cli

    _landed(paths, tmp_path, "id,who,at,amount\n1,a,2025-01-01,12\n2,b,2025-01-02,abc\n",
            "event_id: id\n    customer_id: who\n    event_ts: at\n    event_type: \"case when "
            "cast(amount as double) > 0 then 'purchase' else 'view' end\"\n")  # fmt: skip
    assert cli.main(["check"]) == 1
    out = capsys.readouterr().out
    assert "events/orders.csv: column event_type (case when cast(amount as double)" in out, out
    assert "cannot be read" in out and "Traceback" not in out


def _landed(paths, tmp_path, csv: str, columns: str):
    """events/orders.csv holding ``csv`` and a sources.yml mapping ``columns`` (the lines
    under ``columns:``); returns the sources file."""
    (tmp_path / "config").mkdir()
    events = paths.landing_dir / "events"
    events.mkdir(parents=True)
    (events / "orders.csv").write_text(csv)
    sources = tmp_path / "config" / "sources.yml"
    sources.write_text(f"events:\n  columns:\n    {columns}")
    return sources


def test_the_limits_come_from_the_project_file_and_the_environment_wins(tmp_path, monkeypatch):
    """A shop whose history begins in 1997 sets its floor once in the file (as `init` writes
    it), so a scheduled run quarantines nothing of it; a variable still overrides the file."""
    import datetime as dt

    from segmentation_dagster.core import project

    for var in ("SEGMENTATION_EARLIEST_TS", "SEGMENTATION_MAX_PRICE", "SEGMENTATION_MAX_QUANTITY"):
        monkeypatch.delenv(var, raising=False)
    _project_file(tmp_path, monkeypatch, "limits: {earliest_ts: '1997-01-01', max_price: 500}")
    limits = project.load().limits.limits()
    assert (limits.earliest_ts, limits.max_price, limits.max_quantity) == (
        dt.datetime(1997, 1, 1),
        500.0,
        1e6,
    )
    monkeypatch.setenv("SEGMENTATION_MAX_PRICE", "100")
    assert project.load().limits.limits().max_price == 100.0
    assert project.load().limits.limits().earliest_ts == dt.datetime(1997, 1, 1)
