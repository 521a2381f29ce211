"""The workflow's config as the user meant it, before the schema checks it.

Search spaces: Snakemake merges a ``--configfile`` into the workflow's ``config/config.yaml``
key by key, so a model's search space declared there would be added to the default study's
space (her2st's weight-decay grid would gain the default's dropout and learning rate) instead
of replacing it, and could not be switched off. :func:`replace_search_spaces` gives each
model the search its command-line config declares, whole, or none for ``null``.

Types:
Snakemake's ``--config 'genes={n_top: 50}'`` reads nested values with YAML's base loader, so
every scalar inside braces or brackets arrives as a string ('50', 'true', 'null') and the
schema would refuse ``'50' is not of type 'integer'`` although the user wrote what a YAML file
holds. Here a string becomes the number, boolean or null it spells wherever the schema wants
that type (and not a string); anything else is left for the schema to refuse by name.

Only the standard library (the schema itself is read by :mod:`stflow.schema`): the workflow imports this
before any job, and the models' catalogue reads its :func:`spelled`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SCALARS = {"integer", "number", "boolean", "null"}


def _resolve(schema: dict, root: dict) -> dict:
    """Follow ``$ref: "#/definitions/name"`` (the only form the project's schema uses)."""
    while isinstance(schema, dict) and "$ref" in schema:
        node: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema if isinstance(schema, dict) else {}


def _types(schema: dict) -> set[str]:
    kind = schema.get("type")
    return {kind} if isinstance(kind, str) else set(kind or ())


def spelled(text: str, kind: type) -> Any:
    """``text`` as the bool, int, float or None (``kind``) it spells, else ValueError.

    The one reading of a string-typed setting, for the schema's scalar types here and for
    the models' parameters (``stflow.models.model_specs.coerce``).
    """
    lowered = text.strip().lower()
    if kind is bool:
        if lowered in ("true", "false"):
            return lowered == "true"
        raise ValueError(text)
    if kind is type(None):
        if lowered in ("null", "none", "~"):
            return None
        raise ValueError(text)
    return kind(lowered)


# the schema's scalar types, tried in this order (an integer stays an int where a number is
# wanted, as YAML reads it)
SCHEMA_TYPES = (("null", type(None)), ("boolean", bool), ("integer", int), ("number", int),
                ("number", float))


def _scalar(text: str, types: set[str]) -> Any:
    """``text`` as the number / boolean / null it spells, if the schema wants that type."""
    wanted = types & SCALARS
    if not wanted or ("string" in types and text.strip().lower() not in ("null", "~")):
        return text
    for name, kind in SCHEMA_TYPES:
        if name in wanted:
            try:
                return spelled(text, kind)
            except ValueError:
                continue
    return text


def _branches(schema: dict, root: dict) -> list[dict]:
    """``schema`` resolved, or each alternative of its ``anyOf``/``oneOf`` (at any depth):
    a string under ``anyOf: [number, ...]`` must be read as the number it spells too."""
    schema = _resolve(schema, root)
    alternatives = schema.get("anyOf") or schema.get("oneOf")
    if not alternatives:
        return [schema]
    return [branch for alternative in alternatives for branch in _branches(alternative, root)]


def _container(branches: list[dict], kind: str) -> dict:
    """The branch that describes a value of JSON ``kind`` (object or array): the first that
    names that type, else the first that names no type; ``{}`` (no conversion) otherwise."""
    for branch in branches:
        if kind in _types(branch):
            return branch
    return next((branch for branch in branches if not _types(branch)), {})


def typed_like_schema(value: Any, schema: dict, root: dict | None = None) -> Any:
    """A copy of ``value`` whose strings are converted where ``schema`` wants a scalar type,
    at every depth: properties, additionalProperties (maps of numbers), items and every
    alternative of anyOf/oneOf."""
    root = schema if root is None else root
    branches = _branches(schema, root)
    if isinstance(value, str):  # a string branch whose enum lacks the text does not take it
        fitting = [b for b in branches if _types(b) != {"string"} or value in
                   b.get("enum", [value])]
        return _scalar(value, set().union(*(_types(branch) for branch in fitting)))
    if isinstance(value, dict):
        schema = _container(branches, "object")
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {key: typed_like_schema(item, properties[key], root) if key in properties
                else typed_like_schema(item, extra, root) if isinstance(extra, dict)
                else item for key, item in value.items()}
    if isinstance(value, list):
        items = _container(branches, "array").get("items")
        if isinstance(items, dict):
            return [typed_like_schema(item, items, root) for item in value]
    return value


def replace_search_spaces(config: dict, command_line: Mapping[str, Any]) -> None:
    """Set ``config["search"][model]`` to the command line's entry for every model it names
    (``command_line``: the merged ``--configfile``/``--config`` values), in place; an entry
    of null removes that model's search."""
    declared = command_line.get("search") or {}
    if declared:
        search = {**(config.get("search") or {}),
                  **{model: copy.deepcopy(entry) for model, entry in declared.items()}}
        config["search"] = {model: entry for model, entry in search.items()
                            if entry is not None}


@dataclass(frozen=True)
class Problem:
    """One mistake in the config: where (a dotted key path), what was given, why it is
    wrong, and how to fix it; a run stops on all of them at once."""

    key: str
    value: Any
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.key}: {self.problem}. Fix: {self.fix}"
