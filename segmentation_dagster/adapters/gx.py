"""Great Expectations 1.x, as the quality gates use it: a pandas frame validated against a list
of expectations, one result per expectation.

Private here: GX's v1 ``Validator`` (``great_expectations.validator.v1_validator``) and
``ExpectationConfiguration.to_domain_obj``. The public path (``Batch.validate``) builds a new
validator per call and hashes the whole frame each time; one validator loads the batch once.
Each expectation is validated on its own: GX merges expectations that share a type and a
column (two bounds on one column), which would leave a declared check without a result.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class Result:
    """What GX reported for one expectation: success, its result dict in the SUMMARY format
    (``observed_value``, ``unexpected_count``, ``partial_unexpected_list``...) and, when it
    raised, its exception info."""

    success: bool
    result: dict[str, Any]
    exception_info: dict[str, Any] | None


def validate_each(
    df: pd.DataFrame, name: str, expectations: Sequence[tuple[str, dict[str, Any]]]
) -> list[Result]:
    """Validate ``df`` against each (expectation type, kwargs) on its own, in order, in an
    ephemeral GX context without analytics or progress bars."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )
    from great_expectations.validator.v1_validator import Validator

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    batch_definition = (
        context.data_sources.add_pandas(f"{name}_source")
        .add_dataframe_asset(name)
        .add_batch_definition_whole_dataframe("batch")
    )
    validator = Validator(batch_definition, "SUMMARY", batch_parameters={"dataframe": df})
    results = []
    for type_, kwargs in expectations:
        config = ExpectationConfiguration(type=type_, kwargs=kwargs)
        r = validator.validate_expectation(config.to_domain_obj())
        results.append(Result(bool(r.success), r.result or {}, r.exception_info))
    return results
