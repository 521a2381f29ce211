"""Every value given with ``--config`` reaches the code typed as the schema says, at any depth.

Snakemake hands nested ``--config`` values over as strings ('0.737', 'true', 'null'). The
Snakefile reads them once, as the schema types them (stflow.config.typed_like_schema), and
the rules read the config only through the study. Here the schema is walked: every leaf of a
scalar type, wherever it sits (properties, maps, lists, anyOf/oneOf alternatives), is given
through Snakemake's own ``--config`` parser and must come out with the schema's type, so the
next setting added cannot arrive as a string.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import pytest
from snakemake.cli import parse_config
from workflow_fixtures import REPO, TINY

from stflow.config import typed_like_schema
from stflow.config_checks import check_config, with_defaults
from stflow.errors import StflowError
from stflow.schema import load_schema
from stflow.study import Study

SCHEMA = load_schema(REPO / "config" / "schema.yaml")
KINDS = {"integer": (int,), "number": (int, float), "boolean": (bool,), "null": (type(None),)}
MAP_KEY = "x1"  # a key of a map (additionalProperties), valid for every propertyNames pattern


def resolved(schema: dict) -> dict:
    while "$ref" in schema:
        node: Any = SCHEMA
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def types_of(schema: dict) -> set[str]:
    kind = schema.get("type")
    return {kind} if isinstance(kind, str) else set(kind or ())


def scalar_leaves(schema: dict, path: tuple = ()) -> Iterator[tuple[tuple, dict]]:
    """(key path, leaf schema) of every leaf that admits a scalar other than a string; a map's
    key is MAP_KEY and a list's item is index 0."""
    schema = resolved(schema)
    for alternative in schema.get("anyOf", []) + schema.get("oneOf", []):
        yield from scalar_leaves(alternative, path)
    if types_of(schema) & set(KINDS):
        yield path, schema
    for key, child in schema.get("properties", {}).items():
        yield from scalar_leaves(child, (*path, key))
    if isinstance(schema.get("additionalProperties"), dict):
        yield from scalar_leaves(schema["additionalProperties"], (*path, MAP_KEY))
    if isinstance(schema.get("items"), dict):
        yield from scalar_leaves(schema["items"], (*path, 0))


def spelled_value(schema: dict) -> tuple[str, type]:
    """A value the leaf admits, as text, and the type it must arrive as."""
    kinds = types_of(schema)
    if "integer" in kinds:
        return str(schema.get("minimum", schema.get("default") or 1)), int
    if "number" in kinds:
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        return repr(low + 0.25 if schema.get("maximum", 2) >= low + 0.25 else low), float
    if "boolean" in kinds:
        return "true", bool
    return "null", type(None)


def flow(path: tuple, text: str) -> str:
    """The nested YAML flow text that sets ``path`` (below the top key) to ``text``."""
    for key in reversed(path):
        text = f"[{text}]" if key == 0 else f"{{{key}: {text}}}"
    return text


def leaf(config: Any, path: tuple) -> Any:
    for key in path:
        config = config[key]
    return config


LEAVES = list(scalar_leaves(SCHEMA))


def test_the_walk_reaches_every_kind_of_place_a_scalar_sits():
    paths = {".".join(map(str, path)) for path, _ in LEAVES}
    assert {"threads", "genes.n_top", "predict.um_per_px.x1", "seeds.0",
            "search.x1.space.x1.low", "evaluation.block_um"} <= paths
    assert len(paths) >= 40


@pytest.mark.parametrize(("path", "schema"), LEAVES,
                         ids=[".".join(map(str, path)) for path, _ in LEAVES])
def test_a_scalar_given_with_config_arrives_with_the_schema_s_type(path, schema):
    text, kind = spelled_value(schema)
    given = parse_config([f"{path[0]}={flow(path[1:], text)}"])  # as `snakemake --config`
    value = leaf(typed_like_schema(given, SCHEMA), path)
    assert isinstance(value, kind) and not (kind is not bool and isinstance(value, bool)), \
        f"--config {path[0]}={flow(path[1:], text)} reached the workflow as {value!r}"


def test_the_rules_read_the_config_only_through_the_typed_study():
    for smk in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]:
        reads = re.findall(r"\bconfig(?:\[|\.get\()", smk.read_text())
        assert not reads, f"{smk.name} reads the config directly: ask STUDY (stflow/study.py)"


def test_a_slide_s_pixel_size_from_the_command_line_reaches_predict_slide_as_a_number(tmp_path):
    image = tmp_path / "C4.jpg"
    image.write_bytes(b"")
    given = parse_config([f"predict={{slides: {{C4new: {image}}}, um_per_px: {{C4new: 0.737}}}}"])
    config = with_defaults({**copy.deepcopy(TINY), **typed_like_schema(given, SCHEMA)}, SCHEMA)
    assert [str(p) for p in check_config(config, SCHEMA, cwd=tmp_path)] == []
    assert Study(config).slide_um_per_px("C4new") == 0.737


def test_a_number_given_as_text_to_predict_slide_is_refused_naming_the_setting(tmp_path):
    from stflow.deploy.predict_slide import SlideOptions
    from stflow.deploy.slide_scale import slide_mpp

    with pytest.raises(StflowError, match=r"--um-per-px is '0.737' \(str\), not a number"):
        slide_mpp(tmp_path / "C4.jpg", "0.737")
    with pytest.raises(StflowError, match="setting pitch_um is '100' .*Fix"):
        SlideOptions(pitch_um="100")
    assert SlideOptions(pitch_um=100, n_samples=2).pitch_um == 100
