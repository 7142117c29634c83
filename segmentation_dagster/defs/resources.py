"""What every step shares: the resources (warehouse, landing folder, model store, exports,
reports, dbt), the warehouse's concurrency pool and the executor.

Paths come from :class:`segmentation_dagster.core.settings.Paths` (environment variables with
project-local fallbacks), so a deployment points the platform elsewhere without code edits; they
are not resource config, so run config (the launchpad) cannot point a run at other files.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import dagster as dg
import duckdb
import polars as pl
from dagster_dbt import DbtCliResource
from pydantic import Field

from segmentation_dagster.core import warehouse
from segmentation_dagster.core.settings import Paths
from segmentation_dagster.defs.transform.project import dbt_project

#: The concurrency pool of every step that opens the warehouse: DuckDB admits one writing
#: process at a time, and dagster.yaml limits each pool to one step at a time.
DUCKDB_POOL = "duckdb"


class WarehouseResource(dg.ConfigurableResource):
    """The embedded DuckDB warehouse. Every connection holds the single-writer lock.

    Its file is the deployment's (``SEGMENTATION_DUCKDB_PATH`` or ``SEGMENTATION_DATA_DIR``, see
    :class:`~segmentation_dagster.core.settings.Paths`), never run config: a run launched from
    the UI cannot point the platform at another file (a planted database would load a planted
    model)."""

    lock_timeout_s: float = Field(
        default=warehouse.DEFAULT_LOCK_TIMEOUT_S,
        description="How long a step queues for the writer lock before it fails.",
    )

    @property
    def path(self) -> str:
        return str(Paths.from_env().duckdb_path)

    @contextlib.contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection, opened after taking the writer lock."""
        with warehouse.connect(self.path, timeout_s=self.lock_timeout_s) as con:
            yield con

    @contextlib.contextmanager
    def lock(self) -> Iterator[float]:
        """Hold the writer lock without a connection of our own (e.g. while dbt opens the file)."""
        with warehouse.locked(self.path, self.lock_timeout_s) as waited:
            yield waited


class FolderResource(dg.ConfigurableResource):
    """A folder the platform reads or writes: the deployment's (a field of
    :class:`~segmentation_dagster.core.settings.Paths`, from the environment), never run
    config."""

    #: the Paths field this resource is
    folder: ClassVar[str] = ""

    @property
    def dir(self) -> Path:
        return Path(getattr(Paths.from_env(), self.folder))


class LandingResource(FolderResource):
    """The folder where behaviour files land. Read only: nothing here is moved or deleted."""

    folder: ClassVar[str] = "landing_dir"


class ModelStoreResource(FolderResource):
    """The folder fitted models and their reference snapshots are written to."""

    folder: ClassVar[str] = "model_dir"


class ReportsResource(FolderResource):
    """The folder human-readable validation reports are written to."""

    folder: ClassVar[str] = "report_dir"


class ExportResource(FolderResource):
    """Where segment membership exports for activation tools are written."""

    folder: ClassVar[str] = "export_dir"

    def write(self, df: pl.DataFrame, stem: str) -> Path:
        """Write ``<stem>.parquet`` and ``<stem>.csv`` (each via a temp file and a rename)."""
        folder = self.dir
        folder.mkdir(parents=True, exist_ok=True)
        for ext, writer in (("parquet", df.write_parquet), ("csv", df.write_csv)):
            tmp = folder / f".{stem}.{ext}.tmp"
            tmp.unlink(missing_ok=True)  # never write through a link someone left here
            writer(tmp)
            tmp.replace(folder / f"{stem}.{ext}")
        return folder / f"{stem}.parquet"


def dbt_resource() -> DbtCliResource:
    """The dbt resource for this project: its folders and the dbt beside this interpreter
    (which the resource insists on finding, though dbt runs in-process; see
    :mod:`segmentation_dagster.adapters.dbt_runner`)."""
    beside = Path(sys.executable).parent / "dbt"
    executable = str(beside) if beside.exists() else (shutil.which("dbt") or "dbt")
    return DbtCliResource(project_dir=dbt_project, dbt_executable=executable)


def default_resources() -> dict[str, object]:
    """Every resource. Their paths are the environment's (core.settings.Paths.from_env)."""
    return {
        "warehouse": WarehouseResource(),
        "landing": LandingResource(),
        "model_store": ModelStoreResource(),
        "exports": ExportResource(),
        "reports": ReportsResource(),
        "dbt": dbt_resource(),
    }


@dg.definitions
def resources() -> dg.Definitions:
    """The resources, and the executor: steps run one after another in the run's own
    process (DuckDB takes one writer at a time, and a process per step buys nothing here)."""
    return dg.Definitions(resources=default_resources(), executor=dg.in_process_executor)
