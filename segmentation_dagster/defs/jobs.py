"""Jobs: the full pipeline, the daily refresh, and re-segmentation."""

import dagster as dg

#: the per-file reload (one partition per landing file) is materialised on its own, from the UI;
#: the Spark engine's loop (SEGMENTATION_ENGINE=spark) has its own job (defs/spark)
_ALL = (
    dg.AssetSelection.all()
    - dg.AssetSelection.assets("landing_file")
    - dg.AssetSelection.groups("spark")
)

segmentation_job = dg.define_asset_job(
    name="segmentation_job",
    selection=_ALL,
    description="Everything: load files, dbt features, gates, fit (champion/challenger), "
    "assign, profile, export, monitors.",
)

daily_refresh_job = dg.define_asset_job(
    name="daily_refresh_job",
    selection=_ALL - dg.AssetSelection.assets("segmentation_model"),
    description="The day's files, dbt features, gates, assignment with the current champion, "
    "profiles, migrations, export and the drift monitors. No refit.",
)

resegmentation_job = dg.define_asset_job(
    name="resegmentation_job",
    selection=dg.AssetSelection.assets("segmentation_model").downstream(),
    description="Fit a challenger, promote it or keep the champion, align ids, reassign, "
    "profile, export, and re-run the monitors against the (possibly new) reference.",
)
