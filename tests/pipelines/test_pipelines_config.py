"""The pipelines file: validated at start-up, a bad entry stops the server with one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.servers import server_env

from athena.config import ConfigError
from athena.db.embedded import free_port
from athena.errors import ApiError
from athena.pipelines.config import merge_request, parse_pipelines

GOOD = """
pipelines:
  ok:
    source: {table_name: pl_orders}
    sink: {table_name: pl_paid}
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD
            + "  bad:\n    source: {table_name: t}\n    transform: {group_by: a, time_granularity: week}\n    sink: {table_name: s}\n",
            "pipeline 'bad': time_granularity must be one of day, hour, minute",
        ),
        (
            GOOD + "  nosink:\n    source: {table_name: t}\n",
            "pipeline 'nosink': a pipeline needs a sink",
        ),
        (
            GOOD
            + "  typo:\n    source: {table_name: t, conditons: []}\n    sink: {table_name: s}\n",
            "pipeline 'typo': source has unknown key 'conditons'",
        ),
        (
            GOOD
            + "  badop:\n    source: {table_name: t, conditions: [{column: a, operator: almost, value: 1}]}\n    sink: {table_name: s}\n",
            "pipeline 'badop': unknown operator 'almost'",
        ),
        (
            GOOD
            + "  strat:\n    source: {table_name: t}\n    transform: {group_by: a, aggregation_strategy: cumulative_sum}\n    sink: {table_name: s}\n",
            "pipeline 'strat': aggregation_strategy requires aggregation_column",
        ),
        (
            GOOD
            + "  onerr:\n    source: {table_name: t}\n    sink: {table_name: s, on_error: ignore}\n",
            "pipeline 'onerr': sink.on_error must be rollback or skip",
        ),
        ("pipelines: [1, 2]\n", "entry 0 needs a 'name'"),
        ("pipelines:\n  ok: {source: {table_name: t}\n", "is not valid YAML"),
        ("steps: {}\n", "expected a top-level 'pipelines:' mapping"),
    ],
)
def test_bad_entries_are_named(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_pipelines(text, "p.yaml")
    message = str(raised.value)
    assert message.startswith("pipelines file p.yaml")
    assert expected in message
    assert "\n" not in message


def test_good_file_and_list_form_parse() -> None:
    assert list(parse_pipelines(GOOD, "p.yaml")) == ["ok"]
    listed = "pipelines:\n  - name: a\n    source: {view_name: v}\n    sink: {table_name: s}\n"
    assert parse_pipelines(listed, "p.yaml")["a"].source == {"view_name": "v"}
    assert parse_pipelines("", "p.yaml") == {}


def test_the_shipped_examples_are_valid() -> None:
    path = Path(__file__).resolve().parents[2] / "config" / "pipelines.yaml"
    assert set(parse_pipelines(path.read_text(), str(path))) == {
        "copy_paid_orders",
        "daily_revenue",
    }


def _serve(
    tmp_path: Path, catalog_uri: str, admin_key: str, pipelines_file: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("ATHENA_")}
    env.update(
        server_env(
            catalog_uri=catalog_uri, admin_key=admin_key, clients={}, pipelines_file=pipelines_file
        )
    )
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "athena",
            "serve",
            "--port",
            str(free_port()),
            "--data-dir",
            str(tmp_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_server_refuses_to_start_with_a_bad_pipelines_file(
    tmp_path: Path, catalog_uri: str, admin_key: str
) -> None:
    bad = tmp_path / "pipelines.yaml"
    bad.write_text(
        GOOD
        + "  weekly:\n    source: {table_name: t}\n    transform: {group_by: a, time_granularity: week}\n    sink: {table_name: s}\n"
    )
    result = _serve(tmp_path, catalog_uri, admin_key, str(bad))
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1] == (
        f"athena: pipelines file {bad}: pipeline 'weekly': "
        "time_granularity must be one of day, hour, minute"
    )
    assert "Traceback" not in result.stderr


def test_server_refuses_a_pipelines_file_that_does_not_exist(
    tmp_path: Path, catalog_uri: str, admin_key: str
) -> None:
    missing = tmp_path / "nope.yaml"
    result = _serve(tmp_path, catalog_uri, admin_key, str(missing))
    assert result.returncode != 0
    assert (
        result.stderr.strip().splitlines()[-1] == f"athena: pipelines file {missing} does not exist"
    )


def test_inline_sections_merge_key_by_key_over_the_prebuilt_one() -> None:
    prebuilt = parse_pipelines(
        "pipelines:\n  p:\n    source: {table_name: t, columns: [a, b], limit: 5}\n"
        "    transform: {group_by: a}\n    sink: {table_name: s, on_error: skip}\n",
        "p.yaml",
    )
    plan = merge_request({"pipeline": "p", "source": {"limit": 2}}, prebuilt)
    assert (plan.name, plan.source.relation, plan.source.columns) == ("p", "t", ("a", "b"))
    assert plan.source.limit == 2
    assert plan.transform is not None and plan.transform.group_by == "a"
    assert (plan.sink, plan.on_error) == ("s", "skip")
    dropped = merge_request(
        {"pipeline": "p", "transform": None, "sink": {"table_name": "u"}}, prebuilt
    )
    assert dropped.transform is None
    assert (dropped.sink, dropped.on_error) == ("u", "skip")
    with pytest.raises(ApiError) as unknown:
        merge_request({"pipeline": "q"}, prebuilt)
    assert (unknown.value.code, unknown.value.status) == ("unknown_pipeline", 400)
