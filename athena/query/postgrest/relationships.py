"""Embedded resources resolved to foreign keys: the plan stage of a read (pure).

PostgREST resolves every embed of ``select`` against its schema cache while planning, before any
SQL exists; so does the gateway: ``resolve_embeds`` walks the select tree once and answers the
relationship of every embed (or PGRST200 / PGRST201), and the list of tables the request will
read through them (the service checks the caller's rights on those before anything runs). The
builders in ``build.py`` only look relationships up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from athena.db.introspection import ForeignKey, Relation, SchemaSnapshot
from athena.query.postgrest.errors import pgrst_error
from athena.query.postgrest.grammar import EmbedItem, SelectItem


@dataclass
class Relationship:
    """How an embedded resource joins its parent: ``(parent column, child column)`` pairs."""

    target: Relation
    to_one: bool
    pairs: tuple[tuple[str, str], ...]
    fk: ForeignKey
    # many-to-many: the join table, its (parent col, junction col) and (target col, junction
    # col) pairs; ``pairs`` is unused then
    junction: Relation | None = None
    parent_pairs: tuple[tuple[str, str], ...] = ()
    target_pairs: tuple[tuple[str, str], ...] = ()


def resolve_relationship(
    snapshot: SchemaSnapshot, parent: Relation, item: EmbedItem
) -> Relationship:
    """The one foreign key that links ``parent`` and ``item`` (PGRST200 / PGRST201)."""
    candidates: list[Relationship] = []
    target = snapshot.find(item.name, parent.schema) or snapshot.find(item.name)
    if target is not None:
        for fk in parent.foreign_keys:  # many-to-one: parent.fk → target
            if (fk.ref_schema, fk.ref_table) == target.qualified:
                candidates.append(
                    Relationship(
                        target, True, tuple(zip(fk.columns, fk.ref_columns, strict=True)), fk
                    )
                )
        for fk in target.foreign_keys:  # one-to-many: target.fk → parent
            if (fk.ref_schema, fk.ref_table) == parent.qualified:
                pairs = tuple(zip(fk.ref_columns, fk.columns, strict=True))
                # a self-reference is both directions: both are candidates, a hint picks
                candidates.append(Relationship(target, False, pairs, fk))
        if not candidates:
            candidates = _many_to_many(snapshot, parent, target)
    else:
        # ``select=owner_id(*)`` / ``select=fk_name(*)``: embed through the FK column/name
        for fk in parent.foreign_keys:
            if fk.columns == (item.name,) or fk.name == item.name:
                ref = snapshot.find(fk.ref_table, fk.ref_schema)
                if ref is not None:
                    candidates.append(
                        Relationship(
                            ref, True, tuple(zip(fk.columns, fk.ref_columns, strict=True)), fk
                        )
                    )
    if item.hint is not None:
        candidates = [c for c in candidates if _hint_matches(c, item.hint)]
    if not candidates:
        raise pgrst_error(
            "PGRST200",
            f"Could not find a relationship between '{parent.name}' and '{item.name}' in "
            "the schema cache",
            hint="Verify that the tables are related by a foreign key and that the name "
            "(and !hint) in 'select' is right.",
        )
    if len(candidates) > 1:
        options = ", ".join(
            f"'{item.name}!{c.junction.name if c.junction else c.fk.name}'" for c in candidates
        )
        raise pgrst_error(
            "PGRST201",
            f"Could not embed because more than one relationship was found for "
            f"'{parent.name}' and '{item.name}'",
            details=options,
            hint=f"Try changing '{item.name}' to one of the following: {options}. Find the "
            "desired relationship in the 'details' key.",
        )
    return candidates[0]


def _many_to_many(
    snapshot: SchemaSnapshot, parent: Relation, target: Relation
) -> list[Relationship]:
    """Join tables with one foreign key to ``parent`` and another to ``target``."""
    found = []
    for junction in snapshot.relations.values():
        if junction.qualified in (parent.qualified, target.qualified):
            continue
        to_parent = [
            fk for fk in junction.foreign_keys if (fk.ref_schema, fk.ref_table) == parent.qualified
        ]
        to_target = [
            fk for fk in junction.foreign_keys if (fk.ref_schema, fk.ref_table) == target.qualified
        ]
        for fp in to_parent:
            for ft in to_target:
                found.append(
                    Relationship(
                        target,
                        False,
                        (),
                        ft,
                        junction=junction,
                        parent_pairs=tuple(zip(fp.ref_columns, fp.columns, strict=True)),
                        target_pairs=tuple(zip(ft.ref_columns, ft.columns, strict=True)),
                    )
                )
    return found


def _hint_matches(rship: Relationship, hint: str) -> bool:
    if rship.junction is not None:
        return hint == rship.junction.name
    fk = rship.fk
    return (
        hint in (fk.name, rship.target.name) or fk.columns == (hint,) or fk.ref_columns == (hint,)
    )


@dataclass
class Embeds:
    """The relationship of every embed in a select tree, keyed by (parent, item)."""

    by_item: dict[tuple[tuple[str, str], EmbedItem], Relationship] = field(default_factory=dict)
    # tables read through embeds, in select order (targets, then junctions of many-to-many)
    tables: list[Relation] = field(default_factory=list)

    def of(self, parent: Relation, item: EmbedItem) -> Relationship:
        try:
            return self.by_item[(parent.qualified, item)]
        except KeyError:  # a builder asked for an embed the plan never saw: a bug, not input
            raise LookupError(f"embed {item.name!r} of {parent.name!r} was not planned") from None


def resolve_embeds(
    snapshot: SchemaSnapshot, rel: Relation, select: tuple[SelectItem, ...]
) -> Embeds:
    """Resolve every embed of ``select`` under ``rel`` (depth first, in select order)."""
    embeds = Embeds()
    _walk(snapshot, rel, select, embeds)
    return embeds


def _walk(
    snapshot: SchemaSnapshot, parent: Relation, items: tuple[SelectItem, ...], embeds: Embeds
) -> None:
    for item in items:
        if not isinstance(item, EmbedItem):
            continue
        rship = resolve_relationship(snapshot, parent, item)
        embeds.by_item[(parent.qualified, item)] = rship
        embeds.tables.append(rship.target)
        if item.spread:
            continue  # a spread holds columns only; the builder says so if it holds more
        if rship.junction is not None:
            embeds.tables.append(rship.junction)
        _walk(snapshot, rship.target, item.children, embeds)
