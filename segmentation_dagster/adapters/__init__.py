"""Where the project touches another library's private or unstable API: one small module per
library, each pinned by tests/test_adapters.py, so an upgrade that changes one fails in one
obvious place. Nothing else in the package imports these internals.

- ``dagster_internals``: instance storage (check executions, run storage kind, engine events,
  concurrency slots);
- ``dbt_runner``: dbt in the run's process, through dagster-dbt's selection and event
  translation;
- ``evidently_drift``: Evidently's statistical tests and its per-column drift report;
- ``gx``: Great Expectations' validator, one expectation at a time.

The Evidently and GX adapters do not import dagster (core/ uses them).
"""
