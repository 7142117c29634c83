"""Plain-Python core of segmentation_dagster: no `import dagster` anywhere below this package.

- configuration and storage: ``settings`` (paths), ``warehouse`` (DuckDB connections behind a
  single-writer lock), ``runlock`` (runs taking turns), ``testhooks`` (pause points for tests);
- input: ``landing`` (what the landing folder holds), ``contract`` (the columns and row rules
  a file must meet), ``sources`` (mapping your columns onto the contract), ``ingest`` (landing
  files -> raw tables, with quarantine);
- quality: ``quality`` (Great Expectations suites as files), ``audit`` (the validation trail);
- segmentation: ``clustering`` (preprocessing, model selection, assignment), ``lifecycle``
  (champion/challenger, stable ids), ``naming`` and ``profiling`` (what a segment is),
  ``registry`` (models, decisions, the segment catalog), ``segments`` (the published
  assignment and its history);
- monitoring: ``drift`` (behaviour drift, PSI, model quality), ``policy`` (when drift is
  real), ``monitoring`` (the monitors' history).

The demo data and the scores against its truth are in :mod:`segmentation_dagster.demo`.
"""
