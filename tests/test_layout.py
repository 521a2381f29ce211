"""Every path of results/{dataset}/ is defined once, in stflow/layout.py: the rules, the study
and the library read it from there, so moving a file of the results folder is one edit."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from stflow import layout

REPO = Path(__file__).resolve().parents[1]
# the results folders and the files at the top of one (stflow.layout)
FOLDERS = (layout.RAW, layout.ST_DIR, layout.PATCHES_DIR, layout.FEATURES_DIR,
           layout.GRAPH_DIR, layout.MODELS_DIR, layout.PREDICTIONS_DIR, layout.METRICS_DIR,
           layout.TABLES, layout.FIGURES, layout.SLIDES, layout.LOGS, layout.BENCHMARKS,
           layout.FOLD_GENES_DIR, layout.VIEWS_DIR)
FILES = (layout.SAMPLES, layout.SPLITS, layout.GENES)
PATH = re.compile(rf"^({'|'.join(FOLDERS)})/|^({'|'.join(map(re.escape, FILES))})$")
# the sources read their own published layouts (HEST's st/, patches/), not results/
EXEMPT = ("stflow/layout.py", "stflow/data/sources/")
# words, not paths: a command's help and description, an error's prose
PROSE = {"help", "description", "epilog"}


def python_files() -> list[Path]:
    files = [*(REPO / "stflow").rglob("*.py"), *(REPO / "workflow").rglob("*.py")]
    return sorted(p for p in files if not str(p.relative_to(REPO)).startswith(EXEMPT))


def prose_nodes(tree: ast.AST) -> set[int]:
    """Docstrings and keyword arguments that are prose (help=...)."""
    ids = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant):
            ids.add(id(body[0].value))
        if isinstance(node, ast.keyword) and node.arg in PROSE:
            ids |= {id(n) for n in ast.walk(node.value)}
    return ids


def spelt_paths(tree: ast.AST, where: str) -> list[str]:
    """Results paths written as strings (``"tables/metrics.tsv"``, ``f"features/{e}"``) and
    results folders joined with ``/`` (``root / "tables"``)."""
    prose, found = prose_nodes(tree), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in prose and PATH.match(node.value):
            found.append(f"{where}:{node.lineno} {node.value!r}")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            found += [f"{where}:{node.lineno} / {side.value!r}" for side in (node.left, node.right)
                      if isinstance(side, ast.Constant) and side.value in (*FOLDERS, *FILES)]
    return found


def spelt_in_rules(path: Path) -> list[str]:
    """A quoted results path in a .smk file or the Snakefile (Python only in part)."""
    quoted = re.compile(r"""f?["']([^"'\n]*)["']""")
    return [f"{path.relative_to(REPO)}:{i} {m.group(1)!r}"
            for i, line in enumerate(path.read_text().splitlines(), 1)
            for m in quoted.finditer(line) if PATH.match(m.group(1))]


def test_no_code_but_the_layout_spells_a_results_path():
    found = [hit for path in python_files()
             for hit in spelt_paths(ast.parse(path.read_text()), str(path.relative_to(REPO)))]
    found += [hit for path in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]
              for hit in spelt_in_rules(path)]
    assert not found, f"read these from stflow.layout: {found}"


def test_the_finder_finds_a_spelt_path():
    planted = ast.parse('"""results/x in a docstring is prose."""\n'
                        'a = root / "tables" / "metrics.tsv"\n'
                        'b = f"features/{encoder}"\n'
                        'p.add_argument("--out", help="splits.json")\n'
                        'c = data["features"]\n')
    assert [hit.split()[0] for hit in spelt_paths(planted, "x")] == ["x:2", "x:3"]


def test_the_paths_are_the_documented_ones():
    """docs/artifacts.md and the README describe these places; they did not move."""
    assert layout.result("d", layout.ST.format(sample="A1")) == "results/d/st/A1.h5ad"
    assert layout.FEATURES == "features/{encoder}/{sample}.zarr"
    assert layout.MODEL == "models/{encoder}/{model}/seed{seed}/{fold}"
    assert layout.FINAL_MODEL == "models/{encoder}/{model}/final"
    assert layout.PREDICTIONS == "predictions/{encoder}/{model}/seed{seed}/{fold}"
    assert layout.log("predict", layout.RUN) == \
        "logs/predict/{encoder}/{model}/seed{seed}/{fold}.log"
    assert layout.benchmark("download") == "benchmarks/download.tsv"
    assert layout.RUN_TABLES == ("metrics.tsv", "summary.tsv", "summary.md", "genes.tsv",
                                 "biomarkers.tsv", "coverage.tsv", "coverage.md",
                                 "risk_coverage.tsv")
    assert layout.RUN_FIGURES == ("comparison.png", "risk_coverage.png", "training_curves.png",
                                  "biomarkers")
    artifacts = (REPO / "docs" / "artifacts.md").read_text()
    for path in (layout.ST, layout.PATCHES, layout.FEATURES, layout.GRAPH, layout.SPLITS,
                 layout.GENES, layout.SAMPLES, layout.METRICS_TABLE):
        assert path in artifacts, path


def test_the_layout_is_light():
    """The Snakefile imports it while Snakemake parses: the standard library only."""
    imported = {alias.name.split(".")[0] for node in ast.walk(ast.parse(
        (REPO / "stflow" / "layout.py").read_text())) if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else
                      [ast.alias(node.module or "")])}
    assert imported <= {"__future__", "pathlib"}
