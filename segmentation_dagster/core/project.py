"""The project configuration file: every tunable in one place, read by every run.

``segmentation.yml`` in the configuration folder (``$SEGMENTATION_CONFIG_DIR``, default the
repository root; or the file named by ``$SEGMENTATION_PROJECT_FILE``). Every section is
optional; a key left out keeps the built-in default of the core dataclass it configures:

.. code-block:: yaml

    features:     # the dbt project's vars (dbt_project.yml documents each)
      half_life_days: 45
      active_days: 540
    selection:    # core.clustering.SelectionConfig
      k_max: 8
    lifecycle:    # core.lifecycle.LifecycleConfig
      promotion_margin: 0.03
    assignment:   # core.segments.AssignmentConfig
      hysteresis: 0.15
    drift:        # core.drift.DriftConfig
      sample_size: 10000
    policy:       # core.policy.PolicyConfig ($SEGMENTATION_DRIFT_POLICY still wins)
      cooldown_days: 5
    schedules:    # cron expressions; start or stop the schedules in the UI
      refresh_cron: "0 6 * * *"
      retrain_cron: "0 3 * * 1"
    privacy:      # core.privacy.PrivacyConfig
      min_group_size: 10
    value:        # core.value.ValueConfig (churn risk and expected spend)
      horizon_days: 90
      retrain_days: 7   # kept models score the days in between
    text:         # core.text.TextConfig (topics and sentiment of queries and reviews)
      n_topics: 8
      refit_days: 7     # in between, only changed documents are weighed
    limits:       # LimitsConfig: older or larger values are quarantined ($SEGMENTATION_* win)
      earliest_ts: "1997-01-01"

Runs read the file when they start (a scheduled run, a sensor-launched run and a run from the
CLI alike), so a change applies to the next run without run config; a launchpad value
overrides the file for one run. The schedules' cadence is read when the code location loads;
``$SEGMENTATION_REFRESH_CRON`` and ``$SEGMENTATION_RETRAIN_CRON`` win over the file's.
Every value is checked against its field's type and range (each dataclass's ``RULES``,
:mod:`segmentation_dagster.core.checks`; docs/configuration.md lists them); an unknown section
or key, a key written twice, a wrong type or a value out of range is an error naming the file
(or the environment variable the value came from), the section and the key::

    segmentation.yml: selection: k_max: must be a whole number >= 2, got 1
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import TypeAdapter, ValidationError

from segmentation_dagster.core import checks
from segmentation_dagster.core.clustering import SelectionConfig
from segmentation_dagster.core.contract import Limits
from segmentation_dagster.core.drift import DriftConfig
from segmentation_dagster.core.lifecycle import LifecycleConfig
from segmentation_dagster.core.policy import POLICY_ENV, PolicyConfig
from segmentation_dagster.core.privacy import PrivacyConfig
from segmentation_dagster.core.segments import AssignmentConfig
from segmentation_dagster.core.settings import (
    DBT_PROJECT_DIR,
    config_dir,
    load_yaml,
    read_yaml_mapping,
)
from segmentation_dagster.core.text import TextConfig
from segmentation_dagster.core.value import ValueConfig

PROJECT_ENV = "SEGMENTATION_PROJECT_FILE"
PROJECT_FILE = "segmentation.yml"
#: environment variables that win over the ``schedules`` section's keys
CRON_ENV = {
    "refresh_cron": "SEGMENTATION_REFRESH_CRON",
    "retrain_cron": "SEGMENTATION_RETRAIN_CRON",
}
T = TypeVar("T")

#: The dbt project's vars and their defaults (dbt_project.yml documents each).
DBT_VARS: dict[str, Any] = load_yaml((DBT_PROJECT_DIR / "dbt_project.yml").read_text())["vars"]


class ProjectConfigError(ValueError):
    """The project file is malformed; the message names the file, the section and the key."""


@dataclass(frozen=True)
class Schedules:
    """The schedules' cadence (cron)."""

    refresh_cron: str = "0 6 * * *"
    retrain_cron: str = "0 3 * * 1"

    #: each field's range (docs/configuration.md, "Ranges")
    RULES: ClassVar[dict[str, checks.Rule]] = {
        "refresh_cron": checks.cron(),
        "retrain_cron": checks.cron(),
    }

    def __post_init__(self) -> None:
        checks.apply(self, self.RULES)


@dataclass(frozen=True)
class LimitsConfig:
    """Bounds beyond which a landed value is absurd rather than rare: rows beyond are
    quarantined, named after the bound (``event_ts before 2000-01-01``).
    ``$SEGMENTATION_EARLIEST_TS``, ``$SEGMENTATION_MAX_PRICE`` and
    ``$SEGMENTATION_MAX_QUANTITY`` win over the file's."""

    earliest_ts: str = "2000-01-01"
    max_price: float = 1e9
    max_quantity: float = 1e6

    #: each field's range (docs/configuration.md, "Ranges")
    RULES: ClassVar[dict[str, checks.Rule]] = {
        "earliest_ts": checks.Rule(
            "a real date YYYY-MM-DD, not in the future", lambda v: _calendar_date(v)
        ),
        "max_price": checks.number(0, low_open=True),
        "max_quantity": checks.number(0, low_open=True),
    }

    def __post_init__(self) -> None:
        checks.apply(self, self.RULES)

    def limits(self) -> Limits:
        """The bounds in effect: the file's, with the environment's over them."""
        earliest = dt.datetime.fromisoformat(self.earliest_ts)
        return Limits.from_env(Limits(earliest, self.max_price, self.max_quantity))


@dataclass(frozen=True)
class ProjectConfig:
    """The configuration in effect: the file's values over the built-in defaults."""

    features: dict[str, Any] = field(default_factory=dict)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    assignment: AssignmentConfig = field(default_factory=AssignmentConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    schedules: Schedules = field(default_factory=Schedules)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    value: ValueConfig = field(default_factory=ValueConfig)
    text: TextConfig = field(default_factory=TextConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    path: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        """Every value in effect, by section (for run metadata and the CLI)."""
        out = {"features": {**DBT_VARS, **self.features}}
        for name in _SECTIONS:
            out[name] = dataclasses.asdict(getattr(self, name))
        return out


_SECTIONS: dict[str, type] = {
    "selection": SelectionConfig,
    "lifecycle": LifecycleConfig,
    "assignment": AssignmentConfig,
    "drift": DriftConfig,
    "policy": PolicyConfig,
    "schedules": Schedules,
    "privacy": PrivacyConfig,
    "value": ValueConfig,
    "text": TextConfig,
    "limits": LimitsConfig,
}


def project_file() -> Path:
    """Where the project file is read from."""
    return Path(os.environ.get(PROJECT_ENV) or config_dir() / PROJECT_FILE)


def _calendar_date(value: object) -> bool:
    """A real date (2026-02-30 is not), written YYYY-MM-DD, and not after tomorrow (a shop a
    timezone ahead may already have tomorrow's events): a snapshot in the future would make
    every customer look lapsed."""
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return False  # the YAML loader keeps dates as text (settings.StrictLoader)
    try:
        day = dt.date.fromisoformat(str(value))
    except ValueError:
        return False
    return day <= dt.date.today() + dt.timedelta(days=1)


_DATE = checks.optional(checks.Rule("a real date YYYY-MM-DD, not in the future", _calendar_date))


def feature_rule(key: str) -> checks.Rule:
    """The range of the dbt var ``key``, from its default's kind: a date, a list of whole
    numbers >= 1, a whole number >= 1 or a number > 0."""
    default = DBT_VARS[key]
    if key == "snapshot_date":
        return _DATE
    if isinstance(default, list):
        return checks.each(checks.whole(1))
    if isinstance(default, int):
        return checks.whole(1)
    return checks.number(0, low_open=True)


def check_features(source: object, values: Mapping[str, object]) -> dict[str, object]:
    """dbt vars checked against :func:`feature_rule` (from the project file, or a run's
    config: both untrusted), every broken one named at once in one
    :class:`ProjectConfigError` naming ``source``; dates come back as text."""
    problems: list[str] = []
    out: dict[str, object] = {}
    for key, value in values.items():
        if key not in DBT_VARS:
            problems.append(
                f"{source}: features: unknown dbt var {key!r} "
                f"(known: {', '.join(sorted(DBT_VARS))})"
            )
            continue
        try:
            feature_rule(key).check(key, value)
        except checks.CheckError as e:
            problems.append(checks.where(source, "features", e))
            continue
        out[key] = value
    if problems:
        raise ProjectConfigError("\n".join(problems))
    return out


def _section(path: Path, name: str, cls: type[T], raw: object) -> T:
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise ProjectConfigError(f"{path}: {name}: must be a mapping of {cls.__name__} fields")
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ProjectConfigError(
            f"{path}: {name}: unknown key(s) {unknown} (known: {', '.join(sorted(known))})"
        )
    rules: dict[str, checks.Rule] = getattr(cls, "RULES", {})
    broken = []  # the values as written (no bool read as 1, no "8" as 8): every one named
    for key, value in raw.items():
        try:
            if key in rules:
                rules[key].check(str(key), value)
        except checks.CheckError as e:
            broken.append(checks.where(path, name, e))
    if broken:
        raise ProjectConfigError("\n".join(broken))
    try:  # then as converted
        return TypeAdapter(cls).validate_python(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        cause = first.get("ctx", {}).get("error")
        if isinstance(cause, checks.CheckError):  # a dataclass's own check of two fields
            raise ProjectConfigError(checks.where(path, name, cause)) from e
        raise ProjectConfigError(f"{path}: {name}: {where}: {first['msg']}") from e
    except ValueError as e:  # a field out of its range
        raise ProjectConfigError(checks.where(path, name, e)) from e


def _with_env(path: Path, sections: dict[str, Any]) -> None:
    """Lay the environment's values over the file's sections (``$SEGMENTATION_DRIFT_POLICY``
    field by field, the cron variables): a bad value names its variable, not the file."""
    for key, env in CRON_ENV.items():
        value = os.environ.get(env)
        if not value:
            continue
        try:
            sections["schedules"] = dataclasses.replace(sections["schedules"], **{key: value})
        except checks.CheckError as e:
            raise ProjectConfigError(checks.where(env, "schedules", e)) from e
    if os.environ.get(POLICY_ENV):  # every field the environment names wins over the file's
        try:
            env_policy = PolicyConfig.env_values()  # checks the variable on its own
        except ValueError as e:
            raise ProjectConfigError(str(e)) from e
        try:
            sections["policy"] = dataclasses.replace(sections["policy"], **env_policy)
        except checks.CheckError as e:  # two fields disagree: one from each
            raise ProjectConfigError(checks.where(f"{POLICY_ENV} over {path}", "policy", e)) from e


def load(path: Path | None = None) -> ProjectConfig:
    """The configuration in effect: the project file (when it exists) over the defaults, and
    ``$SEGMENTATION_DRIFT_POLICY`` over the file's policy."""
    if path is None and os.environ.get(PROJECT_ENV) and not project_file().exists():
        raise ProjectConfigError(f"{PROJECT_ENV}={project_file()}: no such file")
    path = path or project_file()
    raw: dict[str, Any] = {}
    if path.exists():
        raw = read_yaml_mapping(path, ProjectConfigError, "sections")
    unknown = sorted(set(raw) - {"features", *_SECTIONS})
    if unknown:
        raise ProjectConfigError(
            f"{path}: unknown section(s) {unknown} (known: features, {', '.join(_SECTIONS)})"
        )
    features_raw = raw.get("features") or {}
    if not isinstance(features_raw, dict):
        raise ProjectConfigError(f"{path}: features: must be a mapping of dbt vars")
    problems: list[str] = []  # every broken value of the file, not the first only
    features: dict[str, object] = {}
    try:
        features = check_features(path, features_raw)
    except ProjectConfigError as e:
        problems.append(str(e))
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        try:
            sections[name] = _section(path, name, cls, raw.get(name))
        except ProjectConfigError as e:
            problems.append(str(e))
    if problems:
        raise ProjectConfigError("\n".join(problems))
    _with_env(path, sections)
    return ProjectConfig(features=features, path=path if path.exists() else None, **sections)
