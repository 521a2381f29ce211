"""The workflow's config schema as it is checked: config/schema.yaml with the names and
defaults the catalogues define filled in.

The schema file does not restate what the code already defines once: the model names
(:data:`stflow.models.model_specs.MODELS`), the source names (:data:`stflow.catalogue.SOURCES`),
the encoder names (:data:`stflow.catalogue.ENCODERS`
and ``timm:<name>``) and the patch defaults (:data:`stflow.choices.PATCH_DEFAULTS`) are put in
here, where the Snakefile and the tests read the schema, so adding a model or an encoder, or
changing a default, is one edit.

Light on purpose (standard library and PyYAML): the Snakefile imports this while it parses.
"""

from __future__ import annotations

from pathlib import Path

from stflow.catalogue import ENCODERS, SOURCES, TIMM_PREFIX
from stflow.choices import PATCH_DEFAULTS
from stflow.models.model_specs import MODELS

TIMM_NAME = "[A-Za-z0-9_.-]+"  # what may follow TIMM_PREFIX in an encoder name


def encoder_pattern() -> str:
    """The schema's ``encoder_name`` pattern: a registry name or ``timm:<model name>``."""
    return f"^({'|'.join([*ENCODERS, TIMM_PREFIX + TIMM_NAME])})$"


def with_catalogue(schema: dict) -> dict:
    """``schema`` (the parsed config/schema.yaml) with the catalogues' names and defaults
    put in, in place: every model-name enum, the encoder-name pattern, the source enum and
    the patch defaults."""
    definitions, properties = schema["definitions"], schema["properties"]
    definitions["model_name"]["enum"] = list(MODELS)
    properties["predict"]["properties"]["model"]["enum"] = list(MODELS)
    definitions["encoder_name"]["pattern"] = encoder_pattern()
    properties["dataset"]["properties"]["source"]["enum"] = list(SOURCES)
    patches = properties["patches"]["properties"]
    for key, value in PATCH_DEFAULTS.items():
        patches[key]["default"] = value
    return schema


def load_schema(path: str | Path) -> dict:
    """The workflow's config schema: the YAML file at ``path`` with the catalogues' names
    and defaults (:func:`with_catalogue`)."""
    import yaml

    return with_catalogue(yaml.safe_load(Path(path).read_text()))
