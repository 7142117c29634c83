"""Dagster resources: where the warehouse, the landing folder and the model store live.

Defaults come from :class:`segmentation_dagster.core.settings.Paths` (environment variables with
project-local fallbacks), so a deployment points the platform elsewhere without code edits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
from pydantic import Field

from segmentation_dagster.core import warehouse
from segmentation_dagster.core.settings import Paths


class WarehouseResource(dg.ConfigurableResource):
    """The embedded DuckDB warehouse. Every connection holds the single-writer lock."""

    path: str = Field(description="Path of the DuckDB database file.")
    lock_timeout_s: float = Field(
        default=warehouse.DEFAULT_LOCK_TIMEOUT_S,
        description="How long a step queues for the writer lock before it fails.",
    )

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
    """A folder the platform reads or writes."""

    path: str = Field(description="Folder path.")

    @property
    def dir(self) -> Path:
        return Path(self.path)


class LandingResource(FolderResource):
    """The folder where behaviour files land. Read only: nothing here is moved or deleted."""


class ModelStoreResource(FolderResource):
    """The folder fitted models and their reference snapshots are written to."""


class ReportsResource(FolderResource):
    """The folder human-readable validation reports are written to."""


class ExportResource(dg.ConfigurableResource):
    """Where segment membership exports for activation tools are written."""

    path: str = Field(description="Folder for Parquet and CSV exports.")

    def write(self, df: pl.DataFrame, stem: str) -> Path:
        """Write ``<stem>.parquet`` and ``<stem>.csv`` (each via a temp file and a rename)."""
        folder = Path(self.path)
        folder.mkdir(parents=True, exist_ok=True)
        for ext, writer in (("parquet", df.write_parquet), ("csv", df.write_csv)):
            tmp = folder / f".{stem}.{ext}.tmp"
            writer(tmp)
            tmp.replace(folder / f"{stem}.{ext}")
        return folder / f"{stem}.parquet"


def default_resources(paths: Paths | None = None) -> dict[str, object]:
    """Resources for ``paths`` (default: from the environment); dbt is added in definitions."""
    paths = paths or Paths.from_env()
    return {
        "warehouse": WarehouseResource(path=str(paths.duckdb_path)),
        "landing": LandingResource(path=str(paths.landing_dir)),
        "model_store": ModelStoreResource(path=str(paths.model_dir)),
        "exports": ExportResource(path=str(paths.export_dir)),
        "reports": ReportsResource(path=str(paths.report_dir)),
    }
