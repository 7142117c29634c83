"""Jobs."""

import dagster as dg

segmentation_job = dg.define_asset_job(
    name="segmentation_job",
    selection=dg.AssetSelection.all(),
    description="Load landed files, build features with dbt, fit and assign segments, profile.",
)
