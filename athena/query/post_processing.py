"""Post-processing of fetched rows: grouping, time buckets, sums, running totals (pure).

Used by the gateway's fetch (``post_processing`` in the response) and by pipeline transforms,
so it knows nothing about HTTP: ``PostProcessing.from_body(body)`` reads the options from any
mapping, ``post_process(rows, spec)`` returns ``{"grouped": [...]}``.

Each group is ``{label, rows, count, aggregation?}``; ``aggregation`` (only with an
``aggregation_column``) is ``{column, strategy, value, cumulative}`` where ``value`` is the group
sum, computed in ``Decimal`` so that ``0.1 + 0.2`` stays ``0.3``, and ``cumulative`` the running
total over the groups so far (``null`` unless the strategy is ``cumulative_sum``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from athena.errors import ApiError

if TYPE_CHECKING:
    from athena.db.introspection import Relation

GRANULARITIES = ("day", "hour", "minute")
STRATEGIES = ("sum", "cumulative_sum")


def truthy(value: Any) -> bool:
    """Body/query flags: true, "true", "1", "yes", 1 (any case) are on."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


@dataclass(frozen=True)
class PostProcessing:
    """What to do with the rows; build it with ``from_body``."""

    group_by: str
    time_granularity: str | None = None
    aggregation_column: str | None = None
    strategy: str = "sum"
    dedup: bool = False

    @property
    def cumulative(self) -> bool:
        return self.strategy == "cumulative_sum"

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> PostProcessing | None:
        """The options in ``body`` (``None`` when it asks for no grouping); 400 on bad ones."""
        strategy = body.get("aggregation_strategy")
        column = body.get("aggregation_column")
        if strategy not in (None, "") and column in (None, ""):
            raise ApiError(
                "invalid_request",
                "aggregation_strategy requires aggregation_column",
                data={"field": "aggregation_column"},
            )
        group_by = body.get("group_by")
        if group_by in (None, ""):
            return None
        if not isinstance(group_by, str):
            raise ApiError("invalid_request", "group_by must be a column name")
        granularity = body.get("time_granularity")
        if granularity in (None, ""):
            granularity = None
        elif not isinstance(granularity, str) or granularity.lower() not in GRANULARITIES:
            raise ApiError(
                "invalid_value",
                "time_granularity must be one of day, hour, minute",
                data={"field": "time_granularity"},
            )
        else:
            granularity = granularity.lower()
        if column in (None, ""):
            column = None
        elif not isinstance(column, str):
            raise ApiError("invalid_request", "aggregation_column must be a column name")
        if strategy in (None, ""):
            strategy = "cumulative_sum" if truthy(body.get("cumulative_sum")) else "sum"
        elif not isinstance(strategy, str) or strategy.lower() not in STRATEGIES:
            raise ApiError(
                "invalid_value",
                "aggregation_strategy must be cumulative_sum (or sum)",
                data={"field": "aggregation_strategy"},
            )
        else:
            strategy = strategy.lower()
        return cls(
            group_by=group_by.strip(),
            time_granularity=granularity,
            aggregation_column=column.strip() if column else None,
            strategy=strategy,
            dedup=truthy(body.get("aggregation_dedup")),
        )

    @property
    def columns(self) -> tuple[str, ...]:
        """Columns the rows must carry."""
        return tuple(c for c in (self.group_by, self.aggregation_column) if c)


def _parse_time(value: Any, column: str) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "T", 1)
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ApiError(
                "invalid_value",
                f"'{column}' holds '{value}', which is not a timestamp",
                data={"column": column},
            ) from None
    else:
        raise ApiError(
            "invalid_value",
            f"'{column}' must hold timestamps for time_granularity",
            data={"column": column},
        )
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed


def time_label(value: Any, granularity: str, column: str) -> str:
    """The bucket of a timestamp: ``2024-01-05``, ``2024-01-05T10:00:00Z``, ``…T10:07:00Z``
    (aware timestamps are bucketed in UTC)."""
    moment = _parse_time(value, column)
    if granularity == "day":
        return moment.strftime("%Y-%m-%d")
    if granularity == "hour":
        return moment.strftime("%Y-%m-%dT%H:00:00Z")
    return moment.strftime("%Y-%m-%dT%H:%M:00Z")


def _label(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, Decimal)):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


# Beyond this magnitude a sum is no JSON number a client can read, and turning an integral
# Decimal such as 1e999999999 into an int would take the event loop for ever.
_MAX_ADJUSTED_EXPONENT = 300


def _decimal(value: Any, column: str) -> Decimal:
    number = _as_decimal(value)
    if number is None:
        raise ApiError(
            "invalid_value",
            f"aggregation_column '{column}' holds a non-numeric value",
            data={"column": column},
        )
    # NaN and Infinity (numeric columns and text alike may hold them) have no JSON form.
    if not number.is_finite() or number.adjusted() > _MAX_ADJUSTED_EXPONENT:
        raise ApiError(
            "invalid_value",
            f"aggregation_column '{column}' holds a value that is not a finite number "
            f"smaller than 1e{_MAX_ADJUSTED_EXPONENT + 1} in magnitude",
            data={"column": column},
        )
    return number


def _as_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return Decimal(int(value))
    if isinstance(value, (int, Decimal)):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))  # repr keeps what the JSON said, not binary noise
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            return None
    return None


def decimal_json(value: Decimal) -> int | float:
    """A Decimal as the JSON number a client reads (integral values stay integers)."""
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def _sort_key(label: str | None, raw: Any, numeric: bool) -> tuple[int, Any]:
    if label is None:
        return (2, "")  # null group last
    if numeric:
        number = Decimal(str(raw))
        # NaN (a numeric column may hold it) cannot be compared: it sorts after the numbers
        return (0, (1, Decimal(0)) if number.is_nan() else (0, number))
    return (1, label)


def post_process(rows: list[dict[str, Any]], spec: PostProcessing) -> dict[str, Any]:
    """Group ``rows`` by ``spec``; see the module docstring for the shape."""
    groups: dict[str | None, list[dict[str, Any]]] = {}
    raw_of: dict[str | None, Any] = {}
    numeric = spec.time_granularity is None
    seen: dict[str | None, set[str]] = {}
    for row in rows:
        value = row.get(spec.group_by)
        if spec.time_granularity is not None and value is not None:
            label: str | None = time_label(value, spec.time_granularity, spec.group_by)
        else:
            label = _label(value)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float, Decimal))
            ):
                numeric = False
        if spec.dedup:
            fingerprint = json.dumps(row, sort_keys=True, default=str)
            bucket = seen.setdefault(label, set())
            if fingerprint in bucket:
                continue
            bucket.add(fingerprint)
        groups.setdefault(label, []).append(row)
        raw_of.setdefault(label, value)
    ordered = sorted(groups, key=lambda lb: _sort_key(lb, raw_of[lb], numeric))
    grouped: list[dict[str, Any]] = []
    running = Decimal(0)
    for label in ordered:
        members = groups[label]
        group: dict[str, Any] = {"label": label, "rows": members, "count": len(members)}
        if spec.aggregation_column:
            column = spec.aggregation_column
            total = sum(
                (_decimal(r[column], column) for r in members if r.get(column) is not None),
                Decimal(0),
            )
            running += total
            group["aggregation"] = {
                "column": column,
                "strategy": spec.strategy,
                "value": decimal_json(total),
                "cumulative": decimal_json(running) if spec.cumulative else None,
            }
        grouped.append(group)
    return {"grouped": grouped}


def check_columns(
    spec: PostProcessing, relation: Relation, selected: tuple[str, ...] | None, what: str
) -> None:
    """The columns ``spec`` groups or sums exist, are among the ``selected`` ones (``None``: all),
    and a time-bucketed group column is a date/timestamp. ``what`` names the selection in
    errors ("selected", "source")."""
    for name in spec.columns:
        column = relation.column(name)
        if selected is not None and name not in selected:
            raise ApiError(
                "invalid_request",
                f"'{name}' must be among the {what} columns to group or aggregate by it",
                data={"column": name},
            )
        if name == spec.group_by and spec.time_granularity and column.category != "D":
            raise ApiError(
                "invalid_value",
                f"time_granularity needs a date/timestamp column; '{name}' is {column.type}",
                data={"column": name},
            )
