"""Pipeline definitions: the prebuilt ones in ``config/pipelines.yaml`` and inline overrides.

A pipeline is three sections, each a JSON/YAML object::

    source:    {table_name | view_name, columns?, conditions?, sort_by?, limit?, batch_size?}
    transform: {group_by, time_granularity?, aggregation_column?, aggregation_strategy?,
                aggregation_dedup?}                                   (optional)
    sink:      {table_name, on_error?: rollback | skip}

The file holds ``pipelines:`` as a mapping of name → definition (a list of definitions with a
``name`` each is accepted too). It is read and validated once at start-up; any problem stops the
server with one line naming the file, the pipeline and the key (``ConfigError``).

A request names a prebuilt pipeline and/or gives sections inline; an inline section is merged
key by key over the prebuilt one (so ``{"pipeline": "x", "source": {"limit": 10}}`` only changes
the limit), and ``"transform": null`` removes the prebuilt transform.

Everything here is pure: names are checked against the live schema later, per request, because
the file names tables of whichever client a request is for.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from athena.config import ConfigError, Settings
from athena.errors import ApiError
from athena.query.conditions import Node, parse_conditions
from athena.query.fetch import SortKey, parse_columns, parse_sort, relation_name
from athena.query.post_processing import PostProcessing

log = logging.getLogger("athena.pipelines")

# Rows per source fetch and per sink insert: big enough that round trips do not dominate,
# small enough that one batch (as Python objects) stays a few MB for typical rows.
DEFAULT_BATCH_SIZE = 1000
MAX_BATCH_SIZE = 10_000

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
SOURCE_KEYS = frozenset(
    {"table_name", "view_name", "columns", "conditions", "sort_by", "sortBy", "limit", "batch_size"}
)
TRANSFORM_KEYS = frozenset(
    {
        "group_by",
        "time_granularity",
        "aggregation_column",
        "aggregation_strategy",
        "aggregation_dedup",
        "cumulative_sum",
    }
)
SINK_KEYS = frozenset({"table_name", "on_error"})
PIPELINE_KEYS = frozenset({"source", "transform", "sink", "description"})
ON_ERROR = ("rollback", "skip")

OnError = Literal["rollback", "skip"]


@dataclass(frozen=True)
class SourcePlan:
    """What to read: ``columns`` ``None`` = every column; ``limit`` ``None`` = every row."""

    relation: str
    columns: tuple[str, ...] | None
    conditions: tuple[Node, ...]
    sort: tuple[SortKey, ...]
    limit: int | None
    batch_size: int


@dataclass(frozen=True)
class PipelinePlan:
    """A validated pipeline, ready for the runner (schema checks still to come)."""

    name: str | None
    source: SourcePlan
    transform: PostProcessing | None
    sink: str
    on_error: OnError


@dataclass(frozen=True)
class PipelineDefinition:
    """A prebuilt pipeline as written in the file (sections kept raw for key-wise overrides)."""

    name: str
    source: dict[str, Any]
    transform: dict[str, Any] | None
    sink: dict[str, Any]
    description: str | None = None

    def plan(self) -> PipelinePlan:
        return build_plan(self.name, self.source, self.transform, self.sink)


def _invalid(message: str, **data: Any) -> ApiError:
    return ApiError("invalid_pipeline", message, data=data or None)


def _section(value: Any, name: str, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(f"{name} must be an object", section=name)
    unknown = sorted(set(value) - allowed)
    if unknown:
        # Strict on purpose: a misspelt `conditions` would otherwise copy the whole table.
        raise _invalid(
            f"{name} has unknown key '{unknown[0]}' (allowed: {', '.join(sorted(allowed))})",
            section=name,
            key=unknown[0],
        )
    return value


def _positive_int(value: Any, field: str, *, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _invalid(f"{field} must be a positive integer", field=field)
    if maximum is not None and value > maximum:
        raise _invalid(f"{field} must be at most {maximum}", field=field)
    return value


def _plan_source(raw: Any) -> SourcePlan:
    source = _section(raw, "source", SOURCE_KEYS)
    try:
        relation = relation_name(source)
    except ApiError:
        raise _invalid(
            "source needs table_name (or view_name)", field="source.table_name"
        ) from None
    limit = source.get("limit")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise _invalid("source.limit must be a non-negative integer", field="source.limit")
    batch = source.get("batch_size")
    batch_size = (
        DEFAULT_BATCH_SIZE
        if batch is None
        else _positive_int(batch, "source.batch_size", maximum=MAX_BATCH_SIZE)
    )
    return SourcePlan(
        relation=relation,
        columns=parse_columns(source.get("columns")),
        conditions=tuple(parse_conditions(source.get("conditions"))),
        sort=parse_sort(source),
        limit=limit,
        batch_size=batch_size,
    )


def _plan_transform(raw: Any) -> PostProcessing | None:
    if raw is None:
        return None
    transform = _section(raw, "transform", TRANSFORM_KEYS)
    if not transform:
        return None
    spec = PostProcessing.from_body(transform)  # the fetch's own parser and rules
    if spec is None:
        raise _invalid("transform needs group_by", field="transform.group_by")
    return spec


def build_plan(name: str | None, source: Any, transform: Any, sink: Any) -> PipelinePlan:
    """Validate the three sections; 400 (``invalid_pipeline`` or the fetch's codes) naming the
    problem."""
    if source is None:
        raise _invalid("a pipeline needs a source", field="source")
    if sink is None:
        raise _invalid("a pipeline needs a sink", field="sink")
    source_plan = _plan_source(source)
    transform_plan = _plan_transform(transform)
    sink_section = _section(sink, "sink", SINK_KEYS)
    table = sink_section.get("table_name")
    if not isinstance(table, str) or not table.strip():
        raise _invalid("sink needs table_name", field="sink.table_name")
    on_error = sink_section.get("on_error", "rollback")
    if on_error not in ON_ERROR:
        raise _invalid("sink.on_error must be rollback or skip", field="sink.on_error")
    return PipelinePlan(name, source_plan, transform_plan, table.strip(), on_error)


def merge_request(body: dict[str, Any], prebuilt: dict[str, PipelineDefinition]) -> PipelinePlan:
    """The plan a request asks for: the named pipeline with the inline sections over it."""
    name = body.get("pipeline")
    base: PipelineDefinition | None = None
    if name not in (None, ""):
        if not isinstance(name, str):
            raise ApiError("invalid_request", "pipeline must be a name", data={"field": "pipeline"})
        base = prebuilt.get(name)
        if base is None:
            raise ApiError(
                "unknown_pipeline", f"unknown pipeline '{name}'", data={"pipeline": name}
            )
    elif not any(key in body for key in ("source", "transform", "sink")):
        raise ApiError(
            "invalid_request",
            "name a prebuilt pipeline or give source and sink",
            data={"fields": ["pipeline", "source", "sink"]},
        )

    def merged(key: str) -> Any:
        inline = body.get(key, ...)
        prior = getattr(base, key) if base is not None else None
        if inline is ...:
            return prior
        if inline is None:  # explicit null: drop the prebuilt section
            return None
        if isinstance(inline, dict) and isinstance(prior, dict):
            return {**prior, **inline}
        return inline

    return build_plan(
        base.name if base else None, merged("source"), merged("transform"), merged("sink")
    )


# -- the file --------------------------------------------------------------------------------


def _entries(loaded: Any, path: str) -> list[tuple[str, Any]]:
    if loaded is None:
        return []
    if not isinstance(loaded, dict) or set(loaded) - {"pipelines"}:
        raise ConfigError(f"pipelines file {path}: expected a top-level 'pipelines:' mapping")
    items = loaded.get("pipelines")
    if items is None:
        return []
    if isinstance(items, dict):
        return list(items.items())
    if isinstance(items, list):
        entries = []
        for index, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise ConfigError(f"pipelines file {path}: entry {index} needs a 'name'")
            entries.append((item["name"], {k: v for k, v in item.items() if k != "name"}))
        return entries
    raise ConfigError(f"pipelines file {path}: 'pipelines' must be a mapping of name → pipeline")


def parse_pipelines(text: str, path: str) -> dict[str, PipelineDefinition]:
    """Every pipeline of the file's ``text``, validated; ``ConfigError`` names the bad entry."""
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise ConfigError(f"pipelines file {path} is not valid YAML{at}") from None
    found: dict[str, PipelineDefinition] = {}
    for name, raw in _entries(loaded, path):
        where = f"pipelines file {path}: pipeline '{name}'"
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"{where}: names use letters, digits, '_', '-' or '.' (max 64)")
        if name in found:
            raise ConfigError(f"{where} is defined twice")
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: must be a mapping with source and sink")
        unknown = sorted(set(raw) - PIPELINE_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key '{unknown[0]}'")
        description = raw.get("description")
        definition = PipelineDefinition(
            name=name,
            source=raw.get("source"),  # type: ignore[arg-type]  # checked by plan()
            transform=raw.get("transform"),
            sink=raw.get("sink"),  # type: ignore[arg-type]
            description=str(description) if description is not None else None,
        )
        try:
            definition.plan()
        except ApiError as exc:
            raise ConfigError(f"{where}: {exc.message}") from None
        found[name] = definition
    return found


def load_pipelines(settings: Settings) -> dict[str, PipelineDefinition]:
    """The pipelines of ``ATHENA_PIPELINES_FILE``.

    The default path may be absent (no prebuilt pipelines); a path the operator set explicitly
    must exist, since a typo there would otherwise silently disable every pipeline.
    """
    path = settings.pipelines_file
    explicit = "pipelines_file" in settings.model_fields_set
    if not path:
        return {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"pipelines file {path} does not exist") from None
        log.info("no pipelines file at %s: no prebuilt pipelines", path)
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read pipelines file {path}: {exc.strerror or exc}") from None
    return parse_pipelines(text, path)
