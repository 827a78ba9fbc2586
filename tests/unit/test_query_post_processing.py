"""Pure post-processing: grouping, buckets, decimal sums, running totals, dedup."""

from __future__ import annotations

import pytest

from athena.errors import ApiError
from athena.query.post_processing import PostProcessing, post_process

ROWS = [
    {"at": "2024-01-01T10:59:59+02:00", "k": "b", "v": 0.1},
    {"at": "2024-01-01T09:10:00Z", "k": "a", "v": 0.2},
    {"at": "2024-01-02T00:00:00Z", "k": "a", "v": "1.05"},
    {"at": "2024-01-02T00:00:00Z", "k": "a", "v": "1.05"},
    {"at": None, "k": None, "v": None},
]


def test_none_without_group_by_and_strategy_needs_column() -> None:
    assert PostProcessing.from_body({}) is None
    with pytest.raises(ApiError):
        PostProcessing.from_body({"group_by": "k", "aggregation_strategy": "cumulative_sum"})
    with pytest.raises(ApiError):
        PostProcessing.from_body({"group_by": "k", "time_granularity": "week"})


def test_hour_buckets_in_utc_with_decimal_sums() -> None:
    spec = PostProcessing.from_body(
        {"group_by": "at", "time_granularity": "Hour", "aggregation_column": "v"}
    )
    assert spec is not None
    grouped = post_process(ROWS, spec)["grouped"]
    assert [g["label"] for g in grouped] == [
        "2024-01-01T08:00:00Z",
        "2024-01-01T09:00:00Z",
        "2024-01-02T00:00:00Z",
        None,
    ]
    assert [g["aggregation"]["value"] for g in grouped] == [0.1, 0.2, 2.1, 0]


def test_cumulative_and_dedup() -> None:
    spec = PostProcessing.from_body(
        {
            "group_by": "k",
            "aggregation_column": "v",
            "aggregation_strategy": "cumulative_sum",
            "aggregation_dedup": "true",
        }
    )
    assert spec is not None
    grouped = post_process(ROWS, spec)["grouped"]
    assert [(g["label"], g["count"]) for g in grouped] == [("a", 2), ("b", 1), (None, 1)]
    assert [g["aggregation"]["value"] for g in grouped] == [1.25, 0.1, 0]
    assert [g["aggregation"]["cumulative"] for g in grouped] == [1.25, 1.35, 1.35]


def test_numeric_labels_sort_numerically() -> None:
    spec = PostProcessing(group_by="n")
    grouped = post_process([{"n": 10}, {"n": 9}, {"n": 100}], spec)["grouped"]
    assert [g["label"] for g in grouped] == ["9", "10", "100"]


def test_non_numeric_aggregation_is_400() -> None:
    spec = PostProcessing(group_by="k", aggregation_column="k")
    with pytest.raises(ApiError) as caught:
        post_process([{"k": "abc"}], spec)
    assert caught.value.code == "invalid_value"
