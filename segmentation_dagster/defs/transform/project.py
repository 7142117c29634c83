"""The dbt project handle. Kept apart from the assets so the manifest can be prepared from it
(`dagster-dbt project prepare-and-package --file segmentation_dagster/defs/transform/project.py`)
before the assets that need the manifest are importable."""

from dagster_dbt import DbtProject

from segmentation_dagster.core.settings import DBT_PROJECT_DIR

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
