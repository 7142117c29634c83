"""Where things live. Every path comes from an environment variable with a project-local default.

| variable                   | default                          | what                          |
|----------------------------|----------------------------------|-------------------------------|
| SEGMENTATION_DATA_DIR      | <repo>/data                      | root of everything generated  |
| SEGMENTATION_LANDING_DIR   | $SEGMENTATION_DATA_DIR/landing   | where files land (read-only)  |
| SEGMENTATION_DUCKDB_PATH   | $SEGMENTATION_DATA_DIR/warehouse.duckdb | the embedded warehouse |
| SEGMENTATION_MODEL_DIR     | $SEGMENTATION_DATA_DIR/models    | fitted models                 |
| SEGMENTATION_TRUTH_DIR     | $SEGMENTATION_DATA_DIR/truth     | simulated personas (eval only)|
| SEGMENTATION_EXPORT_DIR    | $SEGMENTATION_DATA_DIR/exports   | segment membership exports    |
| SEGMENTATION_REPORT_DIR    | $SEGMENTATION_DATA_DIR/reports   | validation reports            |
| SEGMENTATION_CONFIG_DIR    | <repo>                           | project configuration         |
| SEGMENTATION_SOURCES       | $SEGMENTATION_CONFIG_DIR/sources.yml | the column mapping        |
| SEGMENTATION_PROJECT_FILE  | $SEGMENTATION_CONFIG_DIR/segmentation.yml | tunables (core.project) |
| SEGMENTATION_EARLIEST_TS   | 2000-01-01                       | older timestamps: quarantined |
| SEGMENTATION_MAX_PRICE     | 1e9                              | higher prices: quarantined    |
| SEGMENTATION_MAX_QUANTITY  | 1e6                              | more items: quarantined       |
| SEGMENTATION_DUCKDB_MEMORY_LIMIT | 25%                        | DuckDB's memory limit         |
| SEGMENTATION_REPORT_KEEP   | 30                               | reports kept per kind         |
| SEGMENTATION_DUCKDB_TEMP_DIR | $SEGMENTATION_DUCKDB_PATH.tmp  | where DuckDB spills beyond it |
| SEGMENTATION_ENGINE        | duckdb                           | or spark (core.spark_loop)    |
| SEGMENTATION_SPARK_DIR     | $SEGMENTATION_DATA_DIR/spark     | Spark's Parquet and metastore |
| SEGMENTATION_SPARK_MASTER  | local[2]                         | Spark master (or SPARK_REMOTE) |
| SEGMENTATION_SPARK_SCHEMA  | segmentation                     | Spark schema of the models    |
| SEGMENTATION_SPARK_DRIVER_MEMORY | Spark's 1g                 | driver heap (the fit sample)  |
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
EXPECTATIONS_DIR = REPO_ROOT / "expectations"


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A YAML mapping names the same key twice (the line and the key are in the message)."""


class StrictLoader(yaml.SafeLoader):
    """The safe loader, refusing a mapping that repeats a key: PyYAML otherwise keeps the last
    value silently, so a setting written twice would take whichever comes last."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults`: keys written beside it override the merged ones
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class says so
                break
            line = key_node.start_mark.line + 1
            if first is not None:
                raise DuplicateKeyError(
                    None, None, f"line {line}: duplicate key {key!r} (first on line {first})"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _timestamp_as_text(loader: StrictLoader, node: yaml.ScalarNode) -> str:
    return loader.construct_scalar(node)


# a date or time stays the text it was written as, for the setting's own rule to judge (PyYAML
# would make 2026-08-01 a date, and fail on 2026-02-30 naming neither the key nor the line)
StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)


def load_yaml(text: str) -> Any:  # noqa: ANN401 - whatever the YAML holds
    """Parse ``text`` with :class:`StrictLoader` (safe, no repeated keys)."""
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass


def read_yaml_mapping(path: Path, error: type[ValueError], what: str) -> dict[str, Any]:
    """A configuration file's YAML mapping (safe loader, a repeated key refused); ``error``
    names the file otherwise (``what``: what the mapping holds)."""
    try:
        raw = load_yaml(path.read_text()) or {}
    except DuplicateKeyError as e:
        raise error(f"{path}: {e.problem}") from e
    except yaml.YAMLError as e:
        raise error(f"{path}: not valid YAML ({e})") from e
    except ValueError as e:  # a value its tag cannot hold, e.g. `!!float abc`
        raise error(f"{path}: not valid YAML ({e})") from e
    if not isinstance(raw, dict):
        raise error(f"{path}: expected a mapping of {what}")
    return raw


ENGINES = ("duckdb", "spark")


def engine() -> str:
    """The engine that holds the customers (``SEGMENTATION_ENGINE``): duckdb or spark."""
    value = os.environ.get("SEGMENTATION_ENGINE", "duckdb").strip().lower()
    if value not in ENGINES:
        raise ValueError(f"SEGMENTATION_ENGINE={value!r}: expected one of {', '.join(ENGINES)}")
    return value


def spark_schema() -> str:
    """The schema dbt builds the models in on Spark (``SEGMENTATION_SPARK_SCHEMA``, as in
    profiles.yml), checked to be a plain name: it is part of every table name used there."""
    value = os.environ.get("SEGMENTATION_SPARK_SCHEMA", "segmentation")
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", value):
        raise ValueError(
            f"SEGMENTATION_SPARK_SCHEMA={value!r}: expected a plain lower-case name "
            "(letters, digits, _)"
        )
    return value


def spark_dir() -> Path:
    """Where the Spark engine keeps its raw Parquet, tables and local metastore."""
    data = Path(os.environ.get("SEGMENTATION_DATA_DIR", REPO_ROOT / "data"))
    return Path(os.environ.get("SEGMENTATION_SPARK_DIR", data / "spark")).resolve()


def config_dir() -> Path:
    """The folder of the project's configuration files (``sources.yml``)."""
    return Path(os.environ.get("SEGMENTATION_CONFIG_DIR", REPO_ROOT))


@dataclass(frozen=True)
class Paths:
    """Resolved locations of the data a deployment reads and writes."""

    data_dir: Path
    landing_dir: Path
    duckdb_path: Path
    model_dir: Path
    truth_dir: Path
    export_dir: Path
    report_dir: Path

    @classmethod
    def from_env(cls) -> Paths:
        data = Path(os.environ.get("SEGMENTATION_DATA_DIR", REPO_ROOT / "data")).resolve()
        return cls(
            data_dir=data,
            landing_dir=Path(os.environ.get("SEGMENTATION_LANDING_DIR", data / "landing")),
            duckdb_path=Path(os.environ.get("SEGMENTATION_DUCKDB_PATH", data / "warehouse.duckdb")),
            model_dir=Path(os.environ.get("SEGMENTATION_MODEL_DIR", data / "models")),
            truth_dir=Path(os.environ.get("SEGMENTATION_TRUTH_DIR", data / "truth")),
            export_dir=Path(os.environ.get("SEGMENTATION_EXPORT_DIR", data / "exports")),
            report_dir=Path(os.environ.get("SEGMENTATION_REPORT_DIR", data / "reports")),
        )


#: A DuckDB memory size: a number and a unit, or a share of the machine's memory.
_MEMORY = re.compile(r"(\d+(?:\.\d+)?)\s*(?:%|[KMGT]i?B)", re.IGNORECASE)
#: a quarter of the machine (DuckDB's own default is 80 %): the rest is for the Python steps,
#: dbt and the other processes of a shared machine. Operators spill beyond it; the behaviour
#: state's fold, whose working tables do not, is built in buckets of customers that fit
#: (dbt_project/macros/behaviour_buckets.sql). A bigger machine may raise it for speed.
DEFAULT_MEMORY_LIMIT = "25%"


@dataclass(frozen=True)
class DuckDBSettings:
    """How much memory DuckDB may hold and where it spills the rest: every connection the
    platform opens (its own and dbt's, via profiles.yml) gets the same two settings, so a
    deployment can bound it (SEGMENTATION_DUCKDB_MEMORY_LIMIT)."""

    memory_limit: str
    temp_directory: Path

    @classmethod
    def from_env(cls, duckdb_path: Path | None = None) -> DuckDBSettings:
        limit = os.environ.get("SEGMENTATION_DUCKDB_MEMORY_LIMIT", DEFAULT_MEMORY_LIMIT)
        limit = limit.strip()
        size = _MEMORY.fullmatch(limit)
        number = float(size.group(1)) if size else 0.0
        if not 0 < number <= (100 if limit.endswith("%") else float("inf")):
            raise ValueError(
                f"SEGMENTATION_DUCKDB_MEMORY_LIMIT={limit!r}: expected a size such as 6GB or "
                "6GiB, or a share of the machine's memory such as 25%"
            )
        db = duckdb_path or Paths.from_env().duckdb_path
        temp = os.environ.get("SEGMENTATION_DUCKDB_TEMP_DIR") or f"{db}.tmp"
        return cls(memory_limit=limit, temp_directory=Path(temp).resolve())

    def apply(self, con: Any) -> None:  # noqa: ANN401 - a duckdb connection
        """Set both on ``con`` (bound values, never pasted into the statement)."""
        con.execute("set memory_limit = ?", [self.memory_limit])
        con.execute("set temp_directory = ?", [str(self.temp_directory)])
