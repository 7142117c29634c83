"""Metadata a person reads at a glance: polars frames as Dagster tables with a typed schema
(the UI sorts and renders them; Markdown tables are text), floats rounded."""

import base64

import dagster as dg
import duckdb
import polars as pl

_TYPES = {"Int": "int", "UInt": "int", "Float": "float", "Boolean": "bool", "Date": "date"}


def _type(dtype: pl.DataType) -> str:
    name = type(dtype).__name__
    return next((t for prefix, t in _TYPES.items() if name.startswith(prefix)), "string")


def _value(v: object) -> object:
    if isinstance(v, float):
        return round(v, 4)
    if v is None or isinstance(v, int | bool | str):
        return v
    return str(v)


def table(df: pl.DataFrame) -> dg.MetadataValue:
    """``df`` as a ``MetadataValue.table`` with a ``TableSchema`` from its dtypes."""
    schema = dg.TableSchema(
        columns=[dg.TableColumn(name, _type(dtype)) for name, dtype in df.schema.items()]
    )
    records = [
        dg.TableRecord({k: _value(v) for k, v in row.items()}) for row in df.iter_rows(named=True)
    ]
    return dg.MetadataValue.table(records=records, schema=schema)


def column_schema(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> dg.TableSchema:
    """The columns of ``schema.name`` and their DuckDB types (``dagster/column_schema``)."""
    rows = con.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = ? and table_name = ? order by ordinal_position",
        [schema, name],
    ).fetchall()
    return dg.TableSchema(columns=[dg.TableColumn(c, t.lower()) for c, t in rows])


def image(png: bytes, alt: str = "picture") -> dg.MetadataValue:
    """A PNG shown inside the asset's metadata (Markdown with a data URI)."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")
