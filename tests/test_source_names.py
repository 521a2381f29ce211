"""No code outside a source's module and the catalogue branches on a source's name: what the
study, the config checks and the sheet need of a source (samples known before ingest, how
the patient is found, what the download takes, whether HEST-bench's folds apply) is a
field of its :class:`stflow.catalogue.SourceFacts`, so a new source is its module and one
catalogue entry."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from stflow.catalogue import SOURCE_FACTS, SOURCES, SourceFacts

REPO = Path(__file__).resolve().parents[1]
ALLOWED = ("stflow/data/sources/", "stflow/catalogue.py")


def code_files() -> list[Path]:
    """The library, the rules' scripts, the rules and the Snakefile."""
    files = [*(REPO / "stflow").rglob("*.py"), *(REPO / "workflow").rglob("*.py"),
             *(REPO / "rules").glob("*.smk"), REPO / "Snakefile"]
    return sorted(p for p in files
                  if not str(p.relative_to(REPO)).startswith(ALLOWED))


def smk_branches(path: Path) -> list[str]:
    """In a .smk file (not Python as a whole): a line comparing a ``source`` with a name."""
    names = "|".join(SOURCES)
    pattern = re.compile(rf"source\W*\s*(==|!=|\bin\b|\bnot in\b)\s*[(\[{{]?\s*[\"']({names})[\"']")
    return [f"{path.relative_to(REPO)}:{i} {line.strip()}"
            for i, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]


def names_in(node: ast.AST) -> set[str]:
    """The source names written as string constants in ``node``."""
    return {n.value for n in ast.walk(node)
            if isinstance(n, ast.Constant) and n.value in SOURCES}


def branches(tree: ast.AST, where: str) -> list[str]:
    """Comparisons of something named ``source`` with a source's name (``== "her2st"``,
    ``in ("visium", "hest")``, ``!= "sheet"``)."""
    return [f"{where}:{node.lineno} {ast.unparse(node)}" for node in ast.walk(tree)
            if isinstance(node, ast.Compare) and "source" in ast.unparse(node).lower()
            and any(names_in(side) for side in [node.left, *node.comparators])]


def branches_on_a_source_name(path: Path) -> list[str]:
    if path.suffix != ".py":
        return smk_branches(path)
    return branches(ast.parse(path.read_text()), str(path.relative_to(REPO)))


def test_no_code_outside_the_sources_and_the_catalogue_branches_on_a_source_name():
    found = [hit for path in code_files() for hit in branches_on_a_source_name(path)]
    assert found == [], "read a SourceFacts field (stflow/catalogue.py) instead: " + str(found)


def test_the_finder_finds_a_branch_on_a_source_name():
    planted = ast.parse('if entry["source"] in ("visium", "hest"):\n    pass\n'
                        'if dataset["source"] != "sheet":\n    pass\n'
                        'if alpha in ("hest", "validation"):\n    pass\n')
    assert [hit.split()[0] for hit in branches(planted, "planted")] == ["planted:1", "planted:3"]
    smk = REPO / "tests" / ".cache" / "planted.smk"
    smk.parent.mkdir(exist_ok=True)
    smk.write_text('def f(wc):\n    if STUDY.config["dataset"]["source"] == "her2st":\n')
    try:
        assert [hit.split()[0] for hit in smk_branches(smk)] == ["tests/.cache/planted.smk:2"]
    finally:
        smk.unlink()


def test_every_source_has_its_facts_and_its_module():
    assert tuple(SOURCE_FACTS) == SOURCES
    for name, facts in SOURCE_FACTS.items():
        assert facts.name == name
        assert facts.samples in ("listed", "simulated", "known_sections", "sample_sheet")
        assert (REPO / "stflow" / "data" / "sources" / f"{name}.py").is_file()


@pytest.mark.parametrize("facts", list(SOURCE_FACTS.values()), ids=list(SOURCE_FACTS))
def test_a_patient_in_the_name_is_one_group(facts: SourceFacts):
    if facts.patient_in_name:
        assert re.compile(facts.patient_in_name).groups == 1
