"""segmentation_dagster: customer segments that follow behaviour, on Dagster, dbt and DuckDB."""

import os

# scikit-learn's OpenMP threads (gradient boosting, k-means) spin while they wait for each
# other; on a machine whose cores are also busy with something else (a shared server, DuckDB's
# own threads, a second run) a spinning thread holds the core the thread it waits for needs,
# and a fit takes many times longer. Passive threads sleep instead. Set OMP_WAIT_POLICY
# yourself to choose otherwise; it must be set before scikit-learn is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
