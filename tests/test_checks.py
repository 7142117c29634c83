"""Configuration is untrusted input: every value is range-checked, and an error names the file
(or the environment variable the value came from), the section, the key and the rule."""

import importlib

import dagster as dg
import pytest

from segmentation_dagster.core import checks, playbooks, policy, project, sources


def _load(tmp_path, monkeypatch, text: str):
    path = tmp_path / "segmentation.yml"
    path.write_text(text)
    monkeypatch.setenv(project.PROJECT_ENV, str(path))
    for env in (policy.POLICY_ENV, *project.CRON_ENV.values()):
        monkeypatch.delenv(env, raising=False)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # whole number >= n (a bool is not a number, nor is text)
        ("value: {horizon_days: 0}", "value: horizon_days: must be a whole number >= 1, got 0"),
        ("text: {n_topics: true}", "text: n_topics: must be a whole number in [1, 100], got True"),
        ("selection: {k_max: '8'}", "selection: k_max: must be a whole number >= 2, got '8'"),
        ("policy: {cooldown_days: -1}", "policy: cooldown_days: must be a whole number >= 0"),
        # number in a range
        ("assignment: {hysteresis: 1.5}", "assignment: hysteresis: must be a number in [0, 1]"),
        ("drift: {margin: .inf}", "drift: margin: must be a finite number > 0, got inf"),
        # fraction in (0, 1]
        ("lifecycle: {keep_overlap: 0}", "lifecycle: keep_overlap: must be a number in (0, 1]"),
        # one of an allow-list
        ("privacy: {export_ids: emails}", "privacy: export_ids: must be one of pseudonym, raw"),
        ("drift: {method: eval}", "drift: method: must be one of wasserstein, psi"),
        ("selection: {algorithms: [kmeans, dbscan]}", "selection: algorithms: must be a non-emp"),
        # non-empty identifier
        ("selection: {exclude: ['a; drop']}", "selection: exclude: must be a list, each a non"),
        # two fields together
        ("selection: {k_min: 6, k_max: 4}", "selection: k_max: must be >= k_min (6), got 4"),
        ("policy: {k: 4, n: 3}", "policy: k: must be <= n (3), got 4"),
        ("features: {active_days: 0}", "features: active_days: must be a whole number >= 1"),
        # a date: a real one, not in the future (every customer would look lapsed)
        ("features: {snapshot_date: '2026-02-30'}", "snapshot_date: must be empty or a real d"),
        ("features: {snapshot_date: 2026-02-30}", "snapshot_date: must be empty or a real d"),
        ("features: {snapshot_date: 2026-08-01 10:00}", "not in the future, got '2026-08-01 10"),
        ("features: {snapshot_date: 2062-08-01}", "not in the future, got '2062-08-01'"),
    ],
)
def test_each_rule_kind_rejects_naming_file_section_key_and_value(
    tmp_path, monkeypatch, text, message
):
    path = _load(tmp_path, monkeypatch, text)
    with pytest.raises(project.ProjectConfigError) as err:
        project.load()
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


def test_a_policy_error_from_the_file_does_not_name_the_variable(tmp_path, monkeypatch):
    _load(tmp_path, monkeypatch, "policy: {k: 0}")
    monkeypatch.setenv(policy.POLICY_ENV, '{"cooldown_days": 2}')
    with pytest.raises(project.ProjectConfigError) as err:
        project.load()
    assert "policy: k: must be a whole number >= 1" in str(err.value)
    assert policy.POLICY_ENV not in str(err.value)


def test_a_policy_error_from_the_variable_names_the_variable_not_the_file(tmp_path, monkeypatch):
    path = _load(tmp_path, monkeypatch, "policy: {cooldown_days: 2}")
    monkeypatch.setenv(policy.POLICY_ENV, '{"k": true}')
    with pytest.raises(project.ProjectConfigError) as err:
        project.load()
    assert str(err.value) == (
        f"{policy.POLICY_ENV}: policy: k: must be a whole number >= 1, got True"
    )
    assert str(path) not in str(err.value)


@pytest.mark.parametrize(
    ("cron", "why"),
    [
        ("0 6 * *", "4 fields, need 5"),
        ("0 24 * * *", "hour '24'"),
        ("*/0 * * * *", "step '0'"),
        ("0 6 31-1 * *", "day of month '31-1'"),
        ("0 6 * * mon-funday", "day of week"),
        ("@daily", "1 fields, need 5"),
        ("0 6 ? * *", "day of month '?'"),
    ],
)
def test_a_bad_cron_in_the_file_is_a_config_error(tmp_path, monkeypatch, cron, why):
    path = _load(tmp_path, monkeypatch, f'schedules: {{retrain_cron: "{cron}"}}')
    with pytest.raises(project.ProjectConfigError) as err:
        project.load()
    assert str(err.value).startswith(f"{path}: schedules: retrain_cron: must be a cron")
    assert why in str(err.value)


def test_cron_forms_that_are_allowed():
    for cron in ("0 6 * * *", "*/15 0-23/2 1,15 jan-mar mon-fri", "0 3 * * 7", "5,10 * * 12 0"):
        assert checks.cron_problem(cron) is None, cron
        assert dg.ScheduleDefinition(name="s", cron_schedule=cron, target="*")  # dagster agrees


def test_a_bad_cron_in_the_environment_names_the_variable(tmp_path, monkeypatch):
    path = _load(tmp_path, monkeypatch, 'schedules: {refresh_cron: "0 5 * * *"}')
    monkeypatch.setenv("SEGMENTATION_REFRESH_CRON", "0 6 * * * *")
    with pytest.raises(project.ProjectConfigError) as err:
        project.load()
    assert str(err.value).startswith("SEGMENTATION_REFRESH_CRON: schedules: refresh_cron: must")
    assert "6 fields, need 5" in str(err.value) and str(path) not in str(err.value)
    monkeypatch.setenv("SEGMENTATION_REFRESH_CRON", "30 7 * * *")
    assert project.load().schedules.refresh_cron == "30 7 * * *"  # the variable wins


def test_a_bad_cron_keeps_the_location_up_and_every_tick_says_why(monkeypatch, tmp_path):
    from segmentation_dagster.defs.automation import schedules

    _load(tmp_path, monkeypatch, "")
    monkeypatch.setenv("SEGMENTATION_RETRAIN_CRON", "0 3 * * 8")
    try:
        importlib.reload(schedules)
        assert "SEGMENTATION_RETRAIN_CRON: schedules: retrain_cron" in schedules.CONFIG_ERROR
        context = dg.build_schedule_context(instance=dg.DagsterInstance.ephemeral())
        with context:
            result = schedules.retrain_schedule.evaluate_tick(context)
        assert not result.run_requests
        assert "day of week '8'" in result.skip_message
        assert "configuration error" in schedules.daily_refresh_schedule.description
    finally:
        monkeypatch.delenv("SEGMENTATION_RETRAIN_CRON")
        importlib.reload(schedules)
    assert schedules.CONFIG_ERROR is None


@pytest.mark.parametrize(
    ("kind", "text", "line", "key"),
    [
        ("project", "selection: {k_max: 5}\npolicy: {k: 1}\nselection: {k_min: 2}\n", 3,
         "selection"),
        ("project", "selection:\n  k_max: 5\n  k_max: 6\n", 3, "k_max"),
        ("sources", "events:\n  columns:\n    customer_id: a\n    customer_id: b\n", 4,
         "customer_id"),
        ("playbooks", "playbooks:\n  - name: a\n    action: b\n    name: c\n"
         "    when: {monetary: {above: 1}}\n", 4, "name"),
    ],
)  # fmt: skip
def test_a_key_written_twice_is_refused_naming_file_line_and_key(tmp_path, kind, text, line, key):
    path = tmp_path / f"{kind}.yml"
    path.write_text(text)
    load, error = {
        "project": (project.load, project.ProjectConfigError),
        "sources": (sources.load_mapping, sources.SourceConfigError),
        "playbooks": (playbooks.load, playbooks.PlaybookError),
    }[kind]
    with pytest.raises(error) as err:
        load(path)
    assert str(err.value).startswith(f"{path}: line {line}: duplicate key {key!r}")


def test_a_merge_key_is_not_a_duplicate():
    from segmentation_dagster.core.settings import load_yaml

    text = "base: &b {k_max: 5}\nselection:\n  <<: *b\n  k_max: 6\n"
    assert load_yaml(text)["selection"] == {"k_max": 6}


def test_a_valid_config_still_loads(tmp_path, monkeypatch):
    _load(tmp_path, monkeypatch, """
features: {half_life_days: 30, snapshot_date: 2026-08-01}
selection: {k_min: 2, k_max: 6, algorithms: [kmeans, gmm], silhouette_tolerance: 0.02}
lifecycle: {keep_overlap: 1.0, far_quantile: 0.9}
assignment: {hysteresis: 0.0, free_after_change_days: 0}
drift: {method: psi, threshold: 0.2, per_column: {monetary: [wasserstein, 0.5]}}
policy: {k: 3, n: 3, retry_days: 0}
schedules: {refresh_cron: "*/30 5-7 * * mon-fri", retrain_cron: "0 3 1,15 * *"}
privacy: {export_ids: raw}
value: {horizon_days: 30}
text: {n_topics: 4}
""")  # fmt: skip
    cfg = project.load()
    assert cfg.features["snapshot_date"] == "2026-08-01"
    assert cfg.selection.algorithms == ("kmeans", "gmm")
    assert cfg.drift.per_column == {"monetary": ("wasserstein", 0.5)}
    assert (cfg.policy.k, cfg.schedules.retrain_cron, cfg.text.n_topics) == (3, "0 3 1,15 * *", 4)


def test_launchpad_values_are_checked_too():
    from segmentation_dagster.defs.config import SegmentationConfig

    with pytest.raises(ValueError, match=r"run config: SelectionConfig: k_min: must be a whole"):
        SegmentationConfig(k_min=1).selection()


def test_the_rules_read_as_they_test():
    rule = checks.number(0, 1, low_open=True)
    assert rule.text == "a number in (0, 1]" and rule.test(1) and not rule.test(0)
    assert not checks.whole(0).test(True) and not checks.one_of((0, 1)).test(False)
    assert checks.identifier().test("monetary") and not checks.identifier().test("")
    with pytest.raises(checks.CheckError, match=r"^seed: must be a whole number >= 0, got -1$"):
        checks.whole(0).check("seed", -1)


def test_the_ranges_table_lists_every_checked_key():
    import dataclasses
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    table = doc.split("## Ranges", 1)[1].split("\n## ", 1)[0]
    rows = {tuple(c.strip(" `") for c in line.split("|")[1:3]) for line in table.splitlines()}
    for name, cls in project._SECTIONS.items():
        assert set(cls.RULES) == {f.name for f in dataclasses.fields(cls)}, name  # every field
        for key in cls.RULES:
            assert (name, key) in rows, (name, key)
    for key in project.DBT_VARS:
        assert ("features", key) in rows, key


def test_every_broken_value_of_a_project_file_is_named_not_the_first_only(tmp_path, monkeypatch):
    path = _load(
        tmp_path,
        monkeypatch,
        "features: {active_days: 0}\nselection: {k_min: 1, k_max: true}\n"
        "schedules: {refresh_cron: '0 25 * * *'}\nprivacy: {export_ids: emails}\n",
    )
    with pytest.raises(project.ProjectConfigError) as err:
        project.load()
    lines = str(err.value).splitlines()
    assert [line.split(": ")[1:3] for line in lines] == [
        ["features", "active_days"], ["selection", "k_min"], ["selection", "k_max"],
        ["schedules", "refresh_cron"], ["privacy", "export_ids"],
    ]  # fmt: skip
    assert all(line.startswith(f"{path}: ") for line in lines)


def test_every_broken_entry_of_a_sources_file_is_named_not_the_first_only(tmp_path):
    path = tmp_path / "sources.yml"
    path.write_text(
        "events:\n  csv: {delim: ';;', ignore_errors: true}\n  columns:\n    amount: total\n"
        '    price: "getenv(\'HOME\')"\n    customer_id: "x\'); drop table raw.events; --"\n'
        "products:\n  columns: {product_id: \"read_csv('/etc/passwd')\"}\n"
    )
    with pytest.raises(sources.SourceConfigError) as err:
        sources.load_mapping(path)
    keys = [line.removeprefix(f"{path}: ").split(":")[0] for line in str(err.value).splitlines()]
    assert keys == ["events.columns", "events.columns.price", "events.columns.customer_id",
                    "events.csv.delim", "events.csv.ignore_errors",
                    "products.columns.product_id"]  # fmt: skip
