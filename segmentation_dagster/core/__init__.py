"""Plain-Python core of segmentation_dagster: no `import dagster` anywhere below this package.

Modules: ``settings`` (paths), ``warehouse`` (DuckDB connections behind a single-writer lock),
``simulate`` (demo data with hidden personas), ``ingest`` (landing files -> raw tables),
``clustering`` (preprocessing, model selection, assignment), ``profiling`` (segment profiles),
``evaluate`` (scores against the simulated truth).
"""
