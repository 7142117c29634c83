"""Ingestion: landing files -> raw tables in DuckDB (see core.ingest for the rules)."""

import dagster as dg
import polars as pl

from segmentation_dagster.core import ingest, privacy
from segmentation_dagster.core.settings import Paths
from segmentation_dagster.core.sources import load_mapping, mapping_path
from segmentation_dagster.defs.metadata import column_schema, table
from segmentation_dagster.defs.resources import DUCKDB_POOL, LandingResource, WarehouseResource

_DESCRIPTIONS = {
    "events": "Behaviour events (views, carts, purchases, searches, reviews) loaded from the "
    "landing folder's `events/`. New or changed files only; a re-delivered file replaces its "
    "rows.",
    "customers": "Optional customer attributes (signup date, country) from the landing "
    "folder's `customers/`.",
    "products": "Optional product attributes (category, base price) from the landing folder's "
    "`products/`.",
}


def _report_metadata(report: ingest.LoadReport) -> dict[str, object]:
    meta: dict[str, object] = {
        "dagster/row_count": report.table_rows,
        "rows_inserted": report.rows_inserted,
        "files_loaded": len(report.loaded),
        "files_replaced": len(report.replaced),
        "files_skipped_unchanged": len(report.skipped),
        "files_rejected": len(report.rejected),
        "entries_ignored": len(report.ignored),
        "rows_quarantined": report.rows_quarantined,
        "rows_erased": report.rows_erased,  # of customers erased with `segmentation forget`
    }
    if report.quarantined_by_reason:
        reasons = sorted(report.quarantined_by_reason.items())
        meta["quarantined_by_reason"] = table(
            pl.DataFrame(reasons, schema=["reason", "rows"], orient="row")
        )
    if report.rejected:
        rejected = pl.DataFrame(
            {"file": list(report.rejected), "problem": list(report.rejected.values())}
        )
        meta["rejected_files"] = table(rejected)
    if report.ignored:
        ignored = pl.DataFrame(
            {"entry": list(report.ignored), "reason": list(report.ignored.values())}
        )
        meta["ignored_entries"] = table(ignored)
    return meta


def build_raw_asset(kind: str) -> dg.AssetsDefinition:
    """The asset that loads ``<landing>/<kind>`` into ``raw.<kind>``."""

    @dg.asset(
        name=f"raw_{kind}",
        group_name="ingestion",
        kinds={"duckdb"},
        description=_DESCRIPTIONS[kind],
        pool=DUCKDB_POOL,
    )
    def _raw(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, landing: LandingResource
    ) -> dg.MaterializeResult:
        mapping = load_mapping(mapping_path(landing.dir))
        data_dir = Paths.from_env().data_dir
        erased = (
            (lambda ids: privacy.forgotten_among(ids, data_dir))
            if privacy.forgotten(data_dir)
            else None
        )
        with warehouse.connect() as con:
            report = ingest.load_kind(con, landing.dir, kind, mapping, erased=erased)
            meta = _report_metadata(report)
            meta["preview"] = table(
                con.sql(f"select * exclude (_loaded_at) from raw.{kind} limit 5").pl()
            )
            meta["dagster/column_schema"] = column_schema(con, "raw", kind)
            # which files (days) are in the warehouse: the latest month of the manifest
            meta["loaded_files"] = table(
                con.sql(
                    "select file_name, status, rows_loaded, rows_quarantined, recorded_at, "
                    f"coalesce(rejected_error, error) as problem from {ingest.MANIFEST} "
                    "where kind = $kind order by file_name desc limit 31",
                    params={"kind": kind},
                ).pl()
            )
            if kind == "events" and report.table_rows:
                # the last week that landed (a bounded scan: only the latest days' rows)
                meta["events_per_day_latest"] = table(
                    con.sql(
                        "select cast(event_ts as date) as day, count(*) as events, "
                        "count(distinct customer_id) as customers from raw.events "
                        "where event_ts >= (select max(event_ts) from raw.events) - interval 7 day "
                        "group by 1 order by 1 desc limit 7"
                    ).pl()
                )
        for name, why in report.rejected.items():
            context.log.error(f"rejected landing file {name}: {why}")
        for name, why in report.ignored.items():
            context.log.warning(f"landing entry {name} not read: {why}")
        if kind == "events" and report.table_rows == 0:
            raise ValueError(
                f"no events in {landing.dir / 'events'}: put event files there (see README) "
                "or generate demo data with `segmentation demo`"
            )
        context.log.info(
            f"{kind}: {len(report.loaded)} file(s) loaded, {len(report.replaced)} replaced, "
            f"{len(report.skipped)} unchanged, {len(report.rejected)} rejected, "
            f"{len(report.ignored)} ignored; "
            f"{report.rows_inserted} rows inserted, {report.rows_quarantined} quarantined, "
            f"{report.table_rows} in raw.{kind}"
        )
        for reason, n in report.quarantined_by_reason.items():
            context.log.warning(f"{kind}: {n} row(s) quarantined: {reason}")
        return dg.MaterializeResult(metadata=meta)

    return _raw


raw_events = build_raw_asset("events")
raw_customers = build_raw_asset("customers")
raw_products = build_raw_asset("products")
