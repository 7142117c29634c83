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

Runs read the file when they start (a scheduled run, a sensor-launched run and a run from the
CLI alike), so a change applies to the next run without run config; a launchpad value
overrides the file for one run. The schedules' cadence is read when the code location loads.
Every value is checked against its field's type; an unknown section or key, or a wrong type, is
an error naming the file, the section and the key.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import TypeAdapter, ValidationError

from segmentation_dagster.core.clustering import SelectionConfig
from segmentation_dagster.core.drift import DriftConfig
from segmentation_dagster.core.lifecycle import LifecycleConfig
from segmentation_dagster.core.policy import POLICY_ENV, PolicyConfig
from segmentation_dagster.core.privacy import PrivacyConfig
from segmentation_dagster.core.segments import AssignmentConfig
from segmentation_dagster.core.settings import DBT_PROJECT_DIR, config_dir, read_yaml_mapping
from segmentation_dagster.core.text import TextConfig
from segmentation_dagster.core.value import ValueConfig

PROJECT_ENV = "SEGMENTATION_PROJECT_FILE"
PROJECT_FILE = "segmentation.yml"
T = TypeVar("T")

#: The dbt project's vars and their defaults (dbt_project.yml documents each).
DBT_VARS: dict[str, Any] = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())["vars"]


class ProjectConfigError(ValueError):
    """The project file is malformed; the message names the file, the section and the key."""


@dataclass(frozen=True)
class Schedules:
    """The schedules' cadence (cron)."""

    refresh_cron: str = "0 6 * * *"
    retrain_cron: str = "0 3 * * 1"


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
}


def project_file() -> Path:
    """Where the project file is read from."""
    return Path(os.environ.get(PROJECT_ENV) or config_dir() / PROJECT_FILE)


def _check_feature(path: Path, key: str, value: object) -> object:
    if key not in DBT_VARS:
        raise ProjectConfigError(
            f"{path}: features: unknown dbt var {key!r} (known: {', '.join(sorted(DBT_VARS))})"
        )
    default = DBT_VARS[key]
    if key == "snapshot_date":
        if value is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(value)):
            raise ProjectConfigError(f"{path}: features: snapshot_date must be YYYY-MM-DD")
        return None if value is None else str(value)
    if isinstance(default, list):
        ok = (
            isinstance(value, list)
            and value
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
        )
    else:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
        ok = ok and (not isinstance(default, int) or isinstance(value, int))
    if not ok:
        kind = (
            "a list of positive whole numbers"
            if isinstance(default, list)
            else ("a positive whole number" if isinstance(default, int) else "a positive number")
        )
        raise ProjectConfigError(f"{path}: features: {key} must be {kind}, got {value!r}")
    return value


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
    try:
        return TypeAdapter(cls).validate_python(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ProjectConfigError(f"{path}: {name}: {where}: {first['msg']}") from e
    except ValueError as e:  # a dataclass's own range check
        raise ProjectConfigError(f"{path}: {name}: {e}") from e


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
    features = {k: _check_feature(path, k, v) for k, v in features_raw.items()}
    sections = {name: _section(path, name, cls, raw.get(name)) for name, cls in _SECTIONS.items()}
    if os.environ.get(POLICY_ENV):  # every field the environment names wins over the file's
        PolicyConfig.from_env()  # checks the variable on its own (names and types)
        env = json.loads(os.environ[POLICY_ENV])
        try:
            sections["policy"] = dataclasses.replace(sections["policy"], **env)
        except ValueError as e:
            raise ProjectConfigError(f"{path} with ${POLICY_ENV}: {e}") from e
    return ProjectConfig(features=features, path=path if path.exists() else None, **sections)
