"""A fitted segmentation model compiled to one SQL query, so the engine that holds the
customers assigns them (DuckDB here, Spark or another warehouse elsewhere) and no customer table
is pulled into Python.

The query does exactly what :meth:`FittedModel.assign` does, step for step: impute each
feature with its fitted median, log1p the skewed ones (clipped at 0), clip to the fitted
quantiles, standardise, then the nearest centroid (first one on ties, as ``argmin``) or, for a
Gaussian mixture, the most probable component; the distance to the chosen centroid, the
confidence (1 - nearest / second-nearest distance, or the component's probability), and the
hysteresis of an earlier assignment (keep the earlier segment unless another centroid is
nearer by more than ``margin``).

Only portable SQL is emitted (``coalesce``, ``greatest``, ``least``, ``ln``, ``exp``,
``sqrt``, ``case``), numbers as double literals in scientific notation (a plain ``0.5`` is a
DECIMAL in Spark), and identifiers are checked against a plain-name pattern instead of quoted
(the quoting differs between engines). Relations are the caller's own names; the fitted numbers
are the model's own floats: no user string reaches the query.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np
import polars as pl
from sklearn.mixture import GaussianMixture

from segmentation_dagster.core.clustering import FittedModel

_PLAIN = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*){0,2}")


def name(identifier: str) -> str:
    """``identifier`` if it is a plain lower-case (optionally schema-qualified) name."""
    if not _PLAIN.fullmatch(identifier):
        raise ValueError(f"not a plain SQL name (lower-case letters, digits, _): {identifier!r}")
    return identifier


def sample_order(seed: int) -> str:
    """The ``order by`` key of a seeded customer sample, the same in DuckDB and Spark: the md5
    of the customer id and the seed (both engines give the same lower-case hex string), so
    ``order by <key> limit n`` picks the same customers on either engine, and a smaller sample
    is part of a larger one. ``seed`` is a whole number, never user text."""
    return f"md5(concat(cast(customer_id as string), ':{int(seed)}'))"


def sample(
    run: Callable[[str], pl.DataFrame], relation: str, n: int, seed: int, rows: int
) -> pl.DataFrame:
    """The ``n`` customers of ``relation`` (``rows`` of them) first by :func:`sample_order`,
    in that order; ``run`` executes a query on the engine that holds them.

    Where the relation is much larger than the sample, only the rows whose key lies below a
    hex prefix chosen to let about 1.5 ``n`` through are sorted (md5 is uniform): sorting every
    customer by a 32-character string is what costs (6.2M customers on local Spark: 142 s, 19 s
    with the prefix). If fewer than ``n`` got through (improbable), every row is sorted; the
    result is the same rows either way."""
    key, n = sample_order(seed), int(n)
    query = f"select * from {relation} {{}} order by {key} limit {n}"
    if rows > 2 * n:
        share = min(1.0, (1.5 * n + 1_000) / rows)
        prefix = f"{min(int(share * 16**8), 16**8 - 1):08x}"
        frame = run(query.format(f"where {key} < '{prefix}'"))
        if frame.height >= n:
            return frame
    return run(query.format(""))


def number(value: float) -> str:
    """A finite float as a double literal both DuckDB and Spark read exactly."""
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"the model holds a non-finite number ({v}); refit it")
    return f"{v:.17e}"


def _least(terms: list[str]) -> str:
    return terms[0] if len(terms) == 1 else f"least({', '.join(terms)})"


def _case(index: str, values: list[str]) -> str:
    whens = " ".join(f"when {i} then {v}" for i, v in enumerate(values))
    return f"case {index} {whens} end"


def _first_argmin(terms: list[str]) -> str:
    """The position of the first smallest of ``terms`` (numpy's argmin)."""
    if len(terms) == 1:
        return "0"
    whens = " ".join(
        f"when {t} <= {_least(terms[i + 1 :])} then {i}" for i, t in enumerate(terms[:-1])
    )
    return f"case {whens} else {len(terms) - 1} end"


def _scaled(model: FittedModel) -> list[str]:
    """The preprocessing of each used feature, as an expression over the source columns."""
    steps = model.preprocessor.named_steps
    medians = steps["impute"].statistics_
    logged = set(steps["log"].kw_args["columns"])
    lo, hi = steps["clip"].lo_, steps["clip"].hi_
    mean, scale = steps["scale"].mean_, steps["scale"].scale_
    if len(medians) != len(model.plan.used):
        raise ValueError("the imputer dropped a feature; this model cannot be compiled")
    out = []
    for j, column in enumerate(model.plan.used):
        x = f"cast(s.{name(column)} as double)"
        v = f"(case when {x} is null or isnan({x}) then {number(medians[j])} else {x} end)"
        if j in logged:
            v = f"ln(1 + greatest({v}, {number(0)}))"
        v = f"least(greatest({v}, {number(lo[j])}), {number(hi[j])})"
        out.append(f"(({v}) - {number(mean[j])}) / {number(scale[j])}")
    return out


def _distances(model: FittedModel) -> list[str]:
    d = len(model.plan.used)
    return [
        "sqrt(" + " + ".join(
            f"(z{j} - {number(c[j])}) * (z{j} - {number(c[j])})" for j in range(d)
        ) + ")"
        for c in model.centroids
    ]  # fmt: skip


def _log_likelihoods(gmm: GaussianMixture, d: int) -> list[str]:
    """Per component: log weight + log density (diagonal covariance), as sklearn computes
    them (up to the shared constant, which a softmax cancels)."""
    if gmm.covariance_type != "diag":
        raise ValueError(f"only diagonal Gaussian mixtures compile, not {gmm.covariance_type!r}")
    out = []
    for k in range(gmm.n_components):
        prec = gmm.precisions_cholesky_[k] ** 2
        const = np.log(gmm.weights_[k]) + np.sum(np.log(gmm.precisions_cholesky_[k]))
        quad = " + ".join(
            f"(z{j} - {number(gmm.means_[k, j])}) * (z{j} - {number(gmm.means_[k, j])}) "
            f"* {number(prec[j])}"
            for j in range(d)
        )
        out.append(f"{number(const)} - {number(0.5)} * ({quad})")
    return out


def assignment_sql(
    model: FittedModel,
    relation: str,
    *,
    key: str = "customer_id",
    previous: str | None = None,
    margin: float = 0.0,
    carry: tuple[str, ...] = (),
) -> str:
    """A query over ``relation`` (a table with ``key`` and the model's feature columns)
    returning ``key``, the ``carry`` columns, segment_id, distance, confidence:
    :meth:`FittedModel.assign` in SQL. ``previous``: a relation with ``key`` and segment_id
    (the earlier assignment) for the hysteresis of ``margin``."""
    k, d = model.k, len(model.plan.used)
    key, relation = name(key), name(relation)
    carried = "".join(f", s.{name(c)} as {c}" for c in carry)
    passed = "".join(f", {c}" for c in carry)
    scaled = _scaled(model)
    dist = _distances(model)
    gmm = model.estimator if isinstance(model.estimator, GaussianMixture) else None
    ll = _log_likelihoods(gmm, d) if gmm is not None else []
    dcols = [f"d{i}" for i in range(k)]
    lcols = [f"l{i}" for i in range(k)]
    if previous is not None and margin > 0:
        known = " ".join(f"when {int(s)} then {i}" for i, s in enumerate(model.segment_ids))
        prev_join = f"left join {name(previous)} p on p.{key} = s.{key}"
        prev_idx = f"case p.segment_id {known} else -1 end"
    else:
        prev_join, prev_idx = "", "-1"
    best = _first_argmin(dcols) if gmm is None else _first_argmin([f"-{c}" for c in lcols])
    if k == 1:
        confidence = f"1 - d0 / (d0 + {number(1)})" if gmm is None else number(1)
    elif gmm is None:
        second = [_least([c for j, c in enumerate(dcols) if j != i]) for i in range(k)]
        confidence = f"1 - {_least(dcols)} / greatest({_case('nearest', second)}, {number(1e-12)})"
    else:
        top = f"greatest({', '.join(lcols)})"
        total = " + ".join(f"exp({c} - top)" for c in lcols)
        confidence = f"exp({_case('idx', lcols)} - top) / ({total})"
    zcols = ", ".join(f"{e} as z{j}" for j, e in enumerate(scaled))
    dsel = ", ".join(f"{e} as d{i}" for i, e in enumerate(dist))
    lsel = "".join(f", {e} as l{i}" for i, e in enumerate(ll))
    keep = (
        f"case when prev >= 0 and {_case('nearest', dcols)} > {number(1 - margin)} * "
        f"{_case('prev', dcols)} then prev else nearest end"
        if prev_idx != "-1"
        else "nearest"
    )
    top_col = f", {top} as top" if gmm is not None and k > 1 else ""
    sids = [str(int(s)) for s in model.segment_ids]
    return f"""
with z as (
    select s.{key} as {key}{carried}, {prev_idx} as prev, {zcols}
    from {relation} s {prev_join}
),
d as (select {key}{passed}, prev, {dsel}{lsel} from z),
n as (select *, {best} as nearest{top_col} from d),
c as (select *, {keep} as idx from n)
select {key}{passed}, {_case("idx", sids)} as segment_id, {_case("idx", dcols)} as distance,
       {confidence} as confidence
from c
"""
