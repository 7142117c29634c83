"""Evidently 0.7, as the drift monitor uses it: a statistical test by name, and a report of one
ValueDrift metric per column.

Private or unstable here: the test registry lives in ``evidently.legacy`` (the 0.7 API has no
public way to compute a test's statistic alone), and the scores are read from the snapshot's
serialised form (``metrics[].value`` and ``metrics[].config.column``).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def stattest_score(method: str, reference: np.ndarray, current: np.ndarray) -> float:
    """The statistic Evidently's test ``method`` gives for a numeric column (its
    ``drift_score``: an effect size or a p-value, depending on the method)."""
    from evidently.legacy.calculations.stattests.registry import get_stattest

    ref, cur = pd.Series(reference), pd.Series(current)
    return float(get_stattest(ref, cur, "num", method)(ref, cur, "num", None).drift_score)


@dataclass(frozen=True)
class DriftReport:
    """Each column's drift statistic, and the report to save as HTML."""

    scores: dict[str, float]
    snapshot: Any

    def save_html(self, path: Path) -> None:
        """The report as HTML, its JavaScript library (3.5 of its 4 MB, the same in every
        report) kept once beside it as ``evidently_<hash>.js`` and referenced by name, so a
        report a day costs its data only. If the page does not have the expected shape, it
        is written whole."""
        html = self.snapshot.get_html_str(as_iframe=False)
        scripts = list(re.finditer(r"<script>(.*?)</script>", html, re.S))
        library = max(scripts, key=lambda m: len(m.group(1)), default=None)
        if library is None or len(library.group(1)) < 1_000_000:
            _write(path, html)
            return
        code = library.group(1)
        name = f"evidently_{hashlib.sha256(code.encode()).hexdigest()[:16]}.js"
        shared = path.with_name(name)
        if not shared.is_file() or shared.is_symlink():
            _write(shared, code)
        _write(path, html[: library.start()] + f'<script src="{name}"></script>'
               + html[library.end() :])  # fmt: skip


def _write(path: Path, text: str) -> None:
    """Write via a temp file and a rename (a reader never sees half a report)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def value_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    methods: dict[str, str],
    thresholds: dict[str, float],
) -> DriftReport:
    """One ValueDrift metric per column of ``methods`` (its method and threshold), every column
    declared numerical. A column Evidently gives no value for scores NaN."""
    os.environ.setdefault("EVIDENTLY_DISABLE_TELEMETRY", "1")
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    cols = list(methods)
    metrics = [ValueDrift(column=c, method=methods[c], threshold=thresholds[c]) for c in cols]
    # declare the types: Evidently would call a low-cardinality count (orders: 0..5) categorical
    definition = DataDefinition(numerical_columns=cols)
    snapshot = Report(metrics).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    scores: dict[str, float] = {}
    for m in snapshot.dict()["metrics"]:
        value = m["value"]
        scores[m["config"]["column"]] = float(value) if value is not None else float("nan")
    return DriftReport(scores, snapshot)
