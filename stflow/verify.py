"""``stflow verify``: check every artifact of a results folder against the checksum recorded
when it was written, and say which job redoes each damaged or missing one.

Standard library and tqdm only (light, like the other ground-floor modules). Artifacts record
their checksum in ``{name}.sha256`` beside them (:func:`stflow.atomic.atomic_output`); the
downloaded ``raw/`` files in ``raw/MANIFEST.tsv``.
"""

from __future__ import annotations

import csv
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from stflow import layout
from stflow.atomic import SIDECAR, sha256_file

FOLDER_RULES = {layout.RAW: "download", layout.ST_DIR: "ingest", layout.PATCHES_DIR: "patches",
                layout.FEATURES_DIR: "embed", layout.GRAPH_DIR: "graph",
                layout.MODELS_DIR: "train", layout.PREDICTIONS_DIR: "predict",
                layout.METRICS_DIR: "evaluate", layout.FIGURES: "figures",
                layout.SLIDES: "predict_slide", layout.FOLD_GENES_DIR: "fold_genes",
                layout.BENCHMARKS: "(the job it times)"}
FILE_RULES = {layout.SAMPLES: "samples_table", layout.SPLITS: "splits", layout.GENES: "genes"}
TABLE_RULES = {"coverage": "interval_coverage", "risk_coverage": "interval_coverage",
               "metrics": "aggregate", "summary": "aggregate", "genes": "aggregate",
               "biomarkers": "aggregate"}


@dataclass(frozen=True)
class Damage:
    """One artifact that is not as written: its path, what is wrong, the rule that makes it."""

    path: Path
    problem: str
    rule: str

    def line(self) -> str:
        """The report's line: the file, the problem, the command that redoes it."""
        return (f"{self.path}: {self.problem}. Fix: snakemake --cores all --forcerun "
                f"{self.path} (rule {self.rule}; or delete it and rerun the stage)")


def rule_of(root: Path, path: Path) -> str:
    """The workflow rule that writes ``path``, from its place under ``results/{dataset}``."""
    rel = path.relative_to(root)
    if len(rel.parts) == 1:
        return FILE_RULES.get(rel.name, "all")
    if rel.parts[0] == layout.TABLES:
        return TABLE_RULES.get(rel.name.split(".")[0], "paper_tables")
    if rel.parts[0] == layout.MODELS_DIR and "final" in rel.parts:
        return "train_final"
    return FOLDER_RULES.get(rel.parts[0], "all")


def recorded(sidecar: Path) -> list[tuple[Path, str]]:
    """(path, sha256) of each line of a ``sha256sum``-format record, paths made absolute."""
    pairs = []
    for line in sidecar.read_text().splitlines():
        digest, _, name = line.partition("  ")
        if name:
            pairs.append((sidecar.parent / name, digest))
    return pairs


def manifest_records(manifest: Path) -> list[tuple[Path, str]]:
    """(path, sha256) of the downloaded files listed in ``raw/MANIFEST.tsv``."""
    with open(manifest, newline="") as handle:
        return [(manifest.parent / row["path"], row["sha256"])
                for row in csv.DictReader(handle, delimiter="\t")]


def check(path: Path, digest: str) -> str | None:
    """What is wrong with one file, or None when it holds what was written."""
    if not path.is_file():
        return "missing (its checksum record lists it)"
    if sha256_file(path) != digest:
        return "damaged: its content differs from the checksum recorded when it was written"
    return None


def check_recorded(path: str | Path) -> None:
    """Refuse an artifact (file or folder) a stage is about to read whose content differs
    from the checksum recorded when it was written, naming it and the fix, before a decoder
    fails deep inside on it (or, worse, reads it); one without a record is read as it is."""
    from stflow.errors import input_error

    path = Path(path)
    sidecar = path.with_name(path.name + SIDECAR)
    if not sidecar.is_file():
        return
    for file, digest in recorded(sidecar):
        problem = check(file, digest)
        if problem is not None:
            raise input_error(file, f"{problem} ({sidecar.name})",
                              f"delete {path} and rerun the stage that writes it "
                              f"(snakemake --cores all --forcerun {path}); `stflow verify` "
                              "on the results folder lists every such file")


def records_of(root: Path) -> list[tuple[Path, str]]:
    """Every (file, sha256) recorded under ``root``: sidecars and the download manifest."""
    sidecars = sorted(p for p in root.rglob(f"*{SIDECAR}") if ".tmp-" not in p.name
                      and p.is_file())
    pairs = [pair for sidecar in sidecars for pair in recorded(sidecar)]
    manifest = root / layout.MANIFEST
    return pairs + (manifest_records(manifest) if manifest.is_file() else [])


def verify_results(root: str | Path, *, threads: int = 4) -> tuple[int, list[Damage]]:
    """(number of files checked, the damaged or missing ones) of a results folder, checked
    ``threads`` files at a time (hashing releases the GIL) with a progress bar."""
    from tqdm import tqdm

    from stflow.errors import input_error

    root = Path(root)
    if not root.is_dir():
        raise input_error(root, "is not a folder", "give a results folder, e.g. results/tiny")
    pairs = records_of(root)
    with ThreadPoolExecutor(max(threads, 1)) as pool:
        problems = list(tqdm(pool.map(lambda pair: check(*pair), pairs), total=len(pairs),
                             desc="verify", unit="file"))
    damaged = [Damage(path, problem, rule_of(root, path))
               for (path, _), problem in zip(pairs, problems, strict=True) if problem]
    return len(pairs), damaged
