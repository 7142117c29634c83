"""Fitted models on disk plus a registry table in DuckDB.

A model is written to a temporary file and renamed into place (atomic on one filesystem), and
only then recorded in ``segmentation.model_registry``; a crash in between leaves an orphan file,
never a registry row that points at nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import duckdb
import joblib

from segmentation_dagster.core.clustering import FittedModel
from segmentation_dagster.core.warehouse import one

SCHEMA = "segmentation"
REGISTRY = f"{SCHEMA}.model_registry"


def ensure_registry(con: duckdb.DuckDBPyConnection) -> None:
    """Create the registry table if missing."""
    con.execute(f"create schema if not exists {SCHEMA}")
    con.execute(
        f"""create table if not exists {REGISTRY} (
            version integer primary key,
            fitted_at timestamp not null,
            snapshot_date date,
            n_customers bigint not null,
            k integer not null,
            silhouette double,
            features_used varchar[] not null,
            features_dropped json,
            scores json,
            path varchar not null
        )"""
    )


def save(
    con: duckdb.DuckDBPyConnection,
    model: FittedModel,
    model_dir: Path,
    snapshot_date: dt.date | None,
) -> int:
    """Persist ``model`` atomically, register it and return its version number."""
    ensure_registry(con)
    version = int(one(con, f"select coalesce(max(version), 0) + 1 from {REGISTRY}")[0])
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / f"segmentation_model_v{version:04d}.joblib"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    joblib.dump(model, tmp)
    tmp.replace(path)
    con.execute(
        f"insert into {REGISTRY} values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            version,
            dt.datetime.now(),
            snapshot_date,
            model.n_train,
            model.k,
            model.silhouette,
            list(model.plan.used),
            json.dumps(model.plan.dropped),
            json.dumps({str(k): v for k, v in model.scores.items()}),
            str(path),
        ],
    )
    return version


def load_latest(con: duckdb.DuckDBPyConnection) -> tuple[int, FittedModel]:
    """The most recent registered model and its version."""
    ensure_registry(con)
    row = one(con, f"select version, path from {REGISTRY} order by version desc limit 1")
    if row is None:
        raise LookupError("no segmentation model is registered yet; materialise segmentation_model")
    return int(row[0]), joblib.load(row[1])
