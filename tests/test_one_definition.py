"""Each fact is written once: the model names, the encoder names, the patch defaults,
``VAL_FRACTION`` and the ``--max-spots`` default each have one defining site, and every other
place (config/schema.yaml, config/config.yaml, the command, the library's defaults) reads it
from there. A change is then one edit, and no test has to keep copies equal."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from stflow import catalogue, choices
from stflow.models.model_specs import MODELS, parameters
from stflow.schema import encoder_pattern, load_schema

REPO = Path(__file__).resolve().parents[1]
SCHEMA_FILE = REPO / "config" / "schema.yaml"

# name -> the one file that assigns it a value (everyone else imports it)
CONSTANTS = {
    "VAL_FRACTION": "stflow/catalogue.py",
    "DEFAULT_MAX_SPOTS": "stflow/choices.py",
    "PATCH_SIZE_UM": "stflow/choices.py",
    "PATCH_SIZE_PX": "stflow/choices.py",
    "MIN_TISSUE": "stflow/choices.py",
}
# a setting -> the constant its default must be read from, wherever a default is written
SETTINGS = {"val_fraction": "VAL_FRACTION", "max_spots": "DEFAULT_MAX_SPOTS",
            "size_um": "PATCH_SIZE_UM", "size_px": "PATCH_SIZE_PX", "min_tissue": "MIN_TISSUE"}


def python_files() -> list[Path]:
    """The code that could restate a fact: the library, the rules' scripts, the benchmarks."""
    return sorted(p for folder in ("stflow", "workflow", "benchmarks")
                  for p in (REPO / folder).rglob("*.py"))


def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def is_number(node: ast.AST | None) -> bool:
    if isinstance(node, ast.UnaryOp):
        node = node.operand
    return (isinstance(node, ast.Constant) and isinstance(node.value, (int, float))
            and not isinstance(node.value, bool))


def where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(REPO)}:{node.lineno}"


# --- constants: one assignment each ----------------------------------------------------------

def assignments(name: str) -> list[str]:
    """Every place ``name = <value>`` is written (imports do not count)."""
    found = []
    for path in python_files():
        for node in ast.walk(parsed(path)):
            targets = (node.targets if isinstance(node, ast.Assign)
                       else [node.target] if isinstance(node, ast.AnnAssign) else [])
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                found.append(where(path, node))
    return found


@pytest.mark.parametrize("name", sorted(CONSTANTS))
def test_each_constant_is_assigned_in_one_place(name):
    (site,) = assignments(name)
    assert site.startswith(CONSTANTS[name] + ":"), site


# --- defaults: no setting's default written as a number beside its constant -----------------

def literal_defaults(path: Path) -> list[str]:
    """Defaults of the settings in SETTINGS written as numbers in ``path``: a function's
    keyword default, a dataclass field, an ``add_argument("--size-um", default=112)``, a
    ``.get("min_tissue", 0.5)`` and a catalogue entry ``"val_fraction": _float(0.2, ...)``."""
    found = []
    for node in ast.walk(parsed(path)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            pairs = [*zip(args.args[len(args.args) - len(args.defaults):], args.defaults, strict=True),
                     *zip(args.kwonlyargs, args.kw_defaults, strict=True)]
            found += [f"{where(path, d)} {a.arg}" for a, d in pairs
                      if a.arg in SETTINGS and is_number(d)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if node.target.id in SETTINGS and is_number(node.value):
                found.append(f"{where(path, node)} {node.target.id}")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0] if node.args else None
            key = first.value if isinstance(first, ast.Constant) else None
            if name == "add_argument" and isinstance(key, str):
                dest = key.lstrip("-").replace("-", "_")
                found += [f"{where(path, node)} {key}" for kw in node.keywords
                          if kw.arg == "default" and dest in SETTINGS and is_number(kw.value)]
            elif name == "get" and key in SETTINGS and len(node.args) > 1 \
                    and is_number(node.args[1]):
                found.append(f"{where(path, node)} .get({key!r}, ...)")
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if (isinstance(key, ast.Constant) and key.value in SETTINGS
                        and isinstance(value, ast.Call) and value.args
                        and is_number(value.args[0])):
                    found.append(f"{where(path, value)} {key.value!r}")
    return found


def test_no_default_of_these_settings_is_written_as_a_number():
    found = [hit for path in python_files() for hit in literal_defaults(path)]
    assert found == [], f"read the default from {sorted(set(SETTINGS.values()))}: {found}"


def test_the_defaults_that_are_read_are_the_one_definition():
    from stflow.models.stflow.settings import STFlowSettings

    assert parameters("stflow")["val_fraction"].default == STFlowSettings().val_fraction \
        == catalogue.VAL_FRACTION
    patches = load_schema(SCHEMA_FILE)["properties"]["patches"]["properties"]
    assert {key: patches[key]["default"] for key in choices.PATCH_DEFAULTS} == \
        choices.PATCH_DEFAULTS == {"size_um": choices.PATCH_SIZE_UM,
                                   "size_px": choices.PATCH_SIZE_PX,
                                   "min_tissue": choices.MIN_TISSUE}


def test_the_patch_size_and_the_spot_cap_appear_as_numbers_in_one_place_only():
    """112 (µm) and 3,000,000 (spots) as numbers anywhere in the code: their definitions."""
    sites = {value: [where(path, node) for path in python_files()
                     for node in ast.walk(parsed(path))
                     if isinstance(node, ast.Constant) and not isinstance(node.value, bool)
                     and node.value == value]
             for value in (112, 3_000_000)}
    assert [s.split(":")[0] for s in sites[112]] == ["stflow/choices.py"], sites[112]
    assert [s.split(":")[0] for s in sites[3_000_000]] == ["stflow/choices.py"], sites


# --- the schema and the default config do not restate them -----------------------------------

def test_the_schema_file_restates_no_model_name_encoder_name_or_patch_default():
    raw = yaml.safe_load(SCHEMA_FILE.read_text())
    definitions, properties = raw["definitions"], raw["properties"]
    assert "enum" not in definitions["model_name"]
    assert "enum" not in properties["predict"]["properties"]["model"]
    assert "pattern" not in definitions["encoder_name"]
    assert not [key for key, value in properties["patches"]["properties"].items()
                if "default" in value]
    text = SCHEMA_FILE.read_text()
    # the default models (models: default) are a setting, not the list of names
    named = [name for name in MODELS if re.search(rf"\b{name}\b", text)]
    assert named == properties["models"]["default"] == ["stflow", "ridge"]
    # the default encoder list (encoders: default) is a setting, not the list of names
    assert [n for n in catalogue.ENCODERS if re.search(rf"\b{n}\b", text)] == \
        ["efficientnet_lite0"]


def test_the_schema_as_loaded_has_them_from_the_one_definition():
    schema = load_schema(SCHEMA_FILE)
    assert schema["definitions"]["model_name"]["enum"] == list(MODELS)
    assert schema["properties"]["predict"]["properties"]["model"]["enum"] == list(MODELS)
    assert schema["definitions"]["encoder_name"]["pattern"] == encoder_pattern()
    assert re.fullmatch(encoder_pattern(), "uni") and re.fullmatch(encoder_pattern(), "timm:x")


def test_the_default_config_leaves_the_patch_defaults_to_the_schema():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert "patches" not in config


# --- name lists: one place lists every model, one every encoder ------------------------------

def listing_sites(names: tuple[str, ...] | list[str]) -> list[str]:
    """Files of the code, the rules and the schema that name every one of ``names`` (as
    string constants in Python, as words elsewhere): the places that list them."""
    sites = []
    for path in python_files():
        strings = {node.value for node in ast.walk(parsed(path))
                   if isinstance(node, ast.Constant) and isinstance(node.value, str)}
        if set(names) <= strings:
            sites.append(str(path.relative_to(REPO)))
    others = [SCHEMA_FILE, REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]
    for path in others:
        words = set(re.findall(r"[A-Za-z0-9_]+", path.read_text()))
        if set(names) <= words:
            sites.append(str(path.relative_to(REPO)))
    return sites


def test_one_place_lists_the_model_names():
    assert listing_sites(list(MODELS)) == ["stflow/models/model_specs.py"]


def test_one_place_lists_the_encoder_names():
    """The encoders' light table is the one list; the torch registry maps builder kinds."""
    assert listing_sites(catalogue.ENCODERS) == ["stflow/catalogue.py"]


# --- every model's parameters: declared in its settings dataclass, nowhere else -------------

@pytest.mark.parametrize("model", sorted(MODELS))
def test_an_estimator_takes_its_parameters_as_its_settings_and_restates_none(model):
    """The estimator's ``__init__`` names no parameter (only ``seed`` and, where it runs on
    one, ``device``); every other keyword goes to its settings, whose fields declare them."""
    import inspect

    spec = MODELS[model]
    signature = inspect.signature(spec.load_class().__init__).parameters
    named = {name for name, p in signature.items() if p.kind is not p.VAR_KEYWORD}
    assert named <= {"self", "seed", "device"}, named
    assert set(parameters(model)) - {"device"} == set(spec.settings.defaults()) - {"seed"}


def test_no_two_modules_of_the_library_share_a_name():
    """A module's name says what it holds, once: ``metrics.py`` or ``registry.py`` in two
    packages would be two meanings under one name."""
    names = [p.name for p in (REPO / "stflow").rglob("*.py")
             if p.name not in ("__init__.py", "__main__.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
