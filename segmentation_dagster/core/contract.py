"""The input contract: which columns a landing file of each kind must or may have, their
warehouse types, the row rules a good row passes, and each kind's key.

events (required: ``event_id``, ``customer_id``, ``event_ts``, ``event_type``), customers
(``customer_id``) and products (``product_id``), each with optional columns. A row that breaks
a rule is quarantined with the rule's reason (see :mod:`segmentation_dagster.core.ingest`); the
rules are SQL conditions that are TRUE for a bad row, the first match wins. Bounds on values
(:class:`Limits`) come from the environment. Your own column names map onto the contract in a
sources file (:mod:`segmentation_dagster.core.sources`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
from dataclasses import dataclass, field

RAW_SCHEMA = "raw"
EVENT_TYPES = ("view", "cart", "purchase", "search", "review")
#: Names other systems give the same event types (compared lower-cased and trimmed); they are
#: loaded as the contract's name. Anything else is quarantined as ``unknown event_type``.
EVENT_TYPE_SYNONYMS: dict[str, str] = {
    **dict.fromkeys(("page_view", "pageview", "product_view", "view_item", "detail", "visit"),
                    "view"),
    **dict.fromkeys(("add_to_cart", "addtocart", "add_to_basket", "add", "basket", "cart_add"),
                    "cart"),
    # not "checkout": in most logs it is the step before the purchase, not the purchase
    **dict.fromkeys(("order", "buy", "transaction", "sale", "order_line"), "purchase"),
    **dict.fromkeys(("query", "site_search"), "search"),
    **dict.fromkeys(("rating", "product_review"), "review"),
}  # fmt: skip


def _event_type_sql() -> str:
    """SQL naming a row's event type in the contract's words (synonyms mapped)."""
    cases = " ".join(f"when '{k}' then '{v}'" for k, v in EVENT_TYPE_SYNONYMS.items())
    return f"case lower(trim(event_type)) {cases} else lower(trim(event_type)) end"


#: the row rule "unknown event_type", over a column named event_type (also read by
#: ``segmentation check`` on a sample of the landed files)
UNKNOWN_EVENT_TYPE = (
    f"({_event_type_sql()}) not in (" + ", ".join(f"'{t}'" for t in EVENT_TYPES) + ")"
)


@dataclass(frozen=True)
class Limits:
    """Bounds beyond which a value is absurd rather than rare: rows outside are quarantined
    with the rule named after the bound (``price above 1e9``, ``event_ts before 2000-01-01``).
    Set through ``SEGMENTATION_EARLIEST_TS``, ``SEGMENTATION_MAX_PRICE`` and
    ``SEGMENTATION_MAX_QUANTITY``."""

    earliest_ts: dt.datetime = dt.datetime(2000, 1, 1)
    max_price: float = 1e9
    max_quantity: float = 1e6

    def __post_init__(self) -> None:
        for name in ("max_price", "max_quantity"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")

    @classmethod
    def from_env(cls, base: Limits | None = None) -> Limits:
        """``base`` (the project file's ``limits``; the defaults when None) with the
        environment's variables over it."""
        kw: dict[str, object] = {}
        ts = os.environ.get("SEGMENTATION_EARLIEST_TS")
        if ts:
            try:
                kw["earliest_ts"] = dt.datetime.fromisoformat(ts)
            except ValueError as e:
                raise ValueError(
                    f"SEGMENTATION_EARLIEST_TS: not a date or timestamp: {ts!r}"
                ) from e
        for var, name in (("SEGMENTATION_MAX_PRICE", "max_price"),
                          ("SEGMENTATION_MAX_QUANTITY", "max_quantity")):  # fmt: skip
            raw = os.environ.get(var)
            if raw:
                try:
                    kw[name] = float(raw)
                except ValueError as e:
                    raise ValueError(f"{var}: not a number: {raw!r}") from e
        try:
            return dataclasses.replace(base or cls(), **kw)  # type: ignore[arg-type]
        except ValueError as e:
            raise ValueError(f"SEGMENTATION_MAX_*: {e}") from e

    def rules(self, contract: Contract) -> list[tuple[str, str]]:
        """The bounded-value rules of ``contract``: (reason, SQL condition true for a bad row).
        The bounds are numbers and a timestamp parsed here, rendered as SQL literals."""
        ts = self.earliest_ts
        if ts.tzinfo is not None:
            ts = ts.astimezone(dt.UTC).replace(tzinfo=None)
        label = ts.date().isoformat() if ts.time() == dt.time() else ts.isoformat(sep=" ")
        out = [
            (f"{col} before {label}", f"{col} < timestamp '{ts.isoformat(sep=' ')}'")
            for col, typ in contract.columns.items()
            if typ == "TIMESTAMP"
        ]
        for col, bound in contract.bounded.items():
            value = float(getattr(self, bound))
            out.append((f"{col} above {_num(value)}", f"{col} > {value!r}"))
        return out


def _num(x: float) -> str:
    """A bound as people write it: 1e9, 2.5e6, 100."""
    return f"{x:g}".replace("e+0", "e").replace("e+", "e")


@dataclass(frozen=True)
class Contract:
    """Columns a landing file of one kind must / may have, their warehouse types, the row
    rules (reason, SQL condition that is TRUE for a bad row; first match wins) and the key."""

    kind: str
    required: dict[str, str]
    optional: dict[str, str]
    key: str
    rules: tuple[tuple[str, str], ...] = ()
    unique_across_files: bool = False
    #: column -> the :class:`Limits` field that bounds it from above
    bounded: dict[str, str] = field(default_factory=dict)
    #: column -> SQL that loads it normalised (e.g. event-type synonyms to the contract's name)
    normalised: dict[str, str] = field(default_factory=dict)

    @property
    def table(self) -> str:
        return f"{RAW_SCHEMA}.{self.kind}"

    @property
    def columns(self) -> dict[str, str]:
        return {**self.required, **self.optional}


CONTRACTS: dict[str, Contract] = {
    "events": Contract(
        "events",
        required={
            "event_id": "VARCHAR",
            "customer_id": "VARCHAR",
            "event_ts": "TIMESTAMP",
            "event_type": "VARCHAR",
        },
        optional={
            "session_id": "VARCHAR",
            "product_id": "VARCHAR",
            "category": "VARCHAR",
            "price": "DOUBLE",
            "discount": "DOUBLE",
            "quantity": "INTEGER",
            "search_query": "VARCHAR",
            "review_rating": "INTEGER",
            "review_text": "VARCHAR",
        },
        key="event_id",
        rules=(
            ("unknown event_type", UNKNOWN_EVENT_TYPE),
            ("event_ts in the future", "event_ts > cast(now() as timestamp) + interval 1 day"),
            ("negative price", "price < 0"),
            ("negative quantity", "quantity < 0"),
            ("discount outside 0..1", "discount < 0 or discount > 1"),
            ("review_rating outside 1..5", "review_rating < 1 or review_rating > 5"),
        ),
        unique_across_files=True,
        normalised={"event_type": _event_type_sql()},
        bounded={"price": "max_price", "quantity": "max_quantity"},
    ),
    "customers": Contract(
        "customers",
        required={"customer_id": "VARCHAR"},
        optional={"signup_ts": "TIMESTAMP", "country": "VARCHAR"},
        key="customer_id",
        rules=(
            ("signup_ts in the future", "signup_ts > cast(now() as timestamp) + interval 1 day"),
        ),
    ),
    "products": Contract(
        "products",
        required={"product_id": "VARCHAR"},
        optional={"category": "VARCHAR", "base_price": "DOUBLE"},
        key="product_id",
        rules=(("negative base_price", "base_price < 0"),),
        bounded={"base_price": "max_price"},
    ),
}
