"""The docs say what the code does, checked against the code: the README's list of
subcommands against the `stflow` parser, and docs/DEVELOPING.md's floors against the imports
of every module of `stflow/`, and the module paths config/schema.yaml cites against the files."""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

from stflow.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "stflow"


def parser_commands() -> list[str]:
    (action,) = [a for a in build_parser()._actions
                 if isinstance(a, argparse._SubParsersAction)]
    return list(action.choices)


def readme_commands() -> list[str]:
    """The subcommands the README's "Library and command line" names, in its order."""
    text = (REPO / "README.md").read_text()
    start = text.index("`stflow --help` lists the subcommands")
    end = text.index("`stflow COMMAND --help`", start)
    return re.findall(r"`([a-z][a-z-]*)`", text[start:end])


def test_the_readme_names_every_subcommand_of_the_parser_once():
    named = readme_commands()
    assert len(named) == len(set(named)), named
    assert set(named) == set(parser_commands())


# --- the floors of docs/DEVELOPING.md ------------------------------------------------------

def documented_floors() -> list[set[str]]:
    """The floors of the picture under "Dependencies point one way", top to bottom: each a set
    of units (``name/`` a package, ``name.py`` a top-level module of stflow/)."""
    text = (REPO / "docs" / "DEVELOPING.md").read_text()
    start = text.index("```", text.index("Dependencies point one way"))
    block = text[start + 3:text.index("```", start + 3)]
    floors = []
    for line in block.splitlines():
        if re.match(r"^ \S", line):  # a floor's line; its description follows after 2 spaces
            units = line.strip().split("  ")[0].split()
            assert all(u.endswith(("/", ".py")) for u in units), line
            floors.append(set(units))
    return floors


def unit_of(module: str) -> str:
    """``stflow.data.sample_sheet`` -> ``data/``, ``stflow.study`` -> ``study.py``."""
    parts = module.split(".")
    if (PACKAGE / parts[1]).is_dir():
        return parts[1] + "/"
    return parts[1] + ".py"


def import_edges() -> set[tuple[str, str, str]]:
    """(importing unit, imported unit, importing file) for every import of stflow, at any
    depth of a module (imports inside functions count too)."""
    edges = set()
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts)
        if module in ("stflow.__init__", "stflow.__main__"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module
                     and node.level == 0 else [])
            for name in names:
                if name.startswith("stflow.") and name != "stflow.__init__":
                    edges.add((unit_of(module), unit_of(name), str(path.relative_to(REPO))))
    return edges


def units() -> set[str]:
    return {(p.name + "/" if p.is_dir() else p.name) for p in PACKAGE.iterdir()
            if (p.is_dir() and (p / "__init__.py").exists())
            or (p.suffix == ".py" and p.name not in ("__init__.py", "__main__.py"))}


def test_every_package_and_module_of_stflow_stands_on_one_documented_floor():
    floors = documented_floors()
    placed = [unit for floor in floors for unit in floor]
    assert len(placed) == len(set(placed)), "a unit on two floors"
    assert set(placed) == units()


def test_every_import_goes_to_the_same_floor_or_one_below_as_the_floors_say():
    floor_of = {unit: height for height, floor in enumerate(reversed(documented_floors()))
                for unit in floor}
    upward = sorted(f"{path}: {unit} imports {imported}" for unit, imported, path
                    in import_edges() if floor_of[imported] > floor_of[unit])
    assert upward == []


def test_deploy_and_crossval_do_not_import_each_other():
    edges = {(unit, imported) for unit, imported, _ in import_edges()}
    assert ("deploy/", "crossval/") not in edges and ("crossval/", "deploy/") not in edges


# --- config/schema.yaml's references to the code ------------------------------------------

def resolves(dotted: str) -> bool:
    """Whether ``stflow.a.b.NAME`` is a module, or a name in one, of the package (by the
    files and their top-level names, without importing them)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        base = REPO.joinpath(*parts[:cut])
        module = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        if module.is_file():
            rest = parts[cut:]
            if not rest:
                return True
            tree = ast.parse(module.read_text())
            names = {t.id for node in tree.body for t in (
                node.targets if isinstance(node, ast.Assign) else
                [node.target] if isinstance(node, ast.AnnAssign) else []) if isinstance(t, ast.Name)}
            names |= {node.name for node in tree.body
                      if isinstance(node, ast.FunctionDef | ast.ClassDef)}
            return len(rest) == 1 and rest[0] in names
    return False


def test_every_module_path_the_schema_cites_exists():
    cited = set(re.findall(r"\bstflow(?:\.[A-Za-z_][A-Za-z0-9_]*)+",
                           (REPO / "config" / "schema.yaml").read_text()))
    assert cited, "the schema cites no module"
    assert [name for name in sorted(cited) if not resolves(name)] == []
    assert not resolves("stflow.models.MODELS") and not resolves("stflow.encoders.ENCODERS")
