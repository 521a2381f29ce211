"""Synthetic sections with known truth, written in the raw her2st layout (`stflow simulate`).

The offline default dataset: the her2st reader ingests it unchanged, and ``truth/{S}.npz``
holds what generated it (domains, true means, the ligand–receiver structure), so tests can
check that a model finds signal that is really there.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from stflow.atomic import atomic_output, sha256_file
from stflow.data.simulator.expression import (
    MIN_NOISE_GENES,
    NEIGHBOUR_RADIUS_UM,
    NEIGHBOUR_SIGMA_UM,
    Batch,
    Programme,
    draw_expression,
    make_programme,
    programme_size,
)
from stflow.data.simulator.image import Stain, render
from stflow.data.simulator.latent_tissue import DOMAINS, GRID_UM, Tissue, make_tissue
from stflow.errors import input_error

log = logging.getLogger(__name__)

MIN_GRID = 8
MAX_IMAGE_PX = 30000
JPEG_QUALITY = 90
TRUTH_MARKER = "stflow simulate"
SPOT_COLUMNS = ["x", "y", "new_x", "new_y", "pixel_x", "pixel_y", "selected"]


@dataclass(frozen=True)
class SimulatedSection:
    """Where one simulated section's files are, and its size."""

    sample: str
    patient: str
    counts: Path
    spots: Path
    image: Path
    truth: Path
    n_spots: int  # spots with counts
    n_listed: int  # spots in the spot file (a few more, as in her2st)


def check_arguments(n_patients: int, sections_per_patient: int, grid: int, n_genes: int,
                    mpp: float) -> None:
    """Refuse settings the generator cannot honour, before any work."""
    if n_patients < 1 or sections_per_patient < 1:
        raise input_error("simulate", f"{n_patients} patients x {sections_per_patient} sections",
                          "ask for at least 1 patient and 1 section per patient")
    if grid < MIN_GRID:
        raise input_error("simulate", f"grid {grid} is too small for tissue domains and "
                          "neighbourhoods", f"use --grid {MIN_GRID} or more")
    need = programme_size() + MIN_NOISE_GENES
    if n_genes < need:
        raise input_error("simulate", f"{n_genes} genes cannot hold the gene programme "
                          f"({programme_size()} structured + {MIN_NOISE_GENES} noise genes)",
                          f"use --n-genes {need} or more")
    if not (isinstance(mpp, int | float) and math.isfinite(mpp) and mpp > 0):
        raise input_error("simulate", f"microns per pixel is {mpp!r}",
                          "use a positive --um-per-px such as 2.0")
    side = (grid + 1) * GRID_UM / mpp
    if side > MAX_IMAGE_PX:
        raise input_error("simulate", f"images would be {side:.0f} px wide (grid {grid} at "
                          f"{mpp} µm/px)", f"raise --um-per-px or lower --grid to stay under "
                          f"{MAX_IMAGE_PX} px")


def check_shifts(expression_shift: float, stain_shift: float) -> None:
    """A shift scale multiplies a spread: it must be a finite number, 0 or more."""
    for flag, value in (("expression-shift", expression_shift), ("stain-shift", stain_shift)):
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise input_error(f"--{flag} (simulate.{flag.replace('-', '_')})",
                              f"{value!r} is not a scale of the patients' shift",
                              "use a finite number of 0 or more (1: the default spread, "
                              "0: patients alike)")


def check_out_dir(out_dir: Path) -> None:
    """The whole folder is replaced, so refuse one that holds anything but a simulation."""
    if out_dir.exists() and any(out_dir.iterdir()):
        readme = out_dir / "truth" / "README"
        if not (readme.is_file() and readme.read_text().startswith(TRUTH_MARKER)):
            raise input_error(out_dir, "folder is not empty and is not an earlier simulation",
                              "choose a new or empty --out folder")


def counts_tsv_gz(counts: np.ndarray, barcodes: list[str], genes: np.ndarray) -> bytes:
    """her2st count table: first column unnamed spot ids, one column per gene; fixed mtime."""
    frame = pd.DataFrame(counts, index=barcodes, columns=list(genes))
    text = io.StringIO()
    frame.to_csv(text, sep="\t", lineterminator="\n")
    return gzip.compress(text.getvalue().encode(), mtime=0)


def spots_tsv(tissue: Tissue) -> str:
    """her2st spot file: array x, y, fitted new_x, new_y, pixel centres, selected."""
    frame = pd.DataFrame({
        "x": tissue.array_xy[:, 0], "y": tissue.array_xy[:, 1],
        "new_x": tissue.new_xy[:, 0].round(3), "new_y": tissue.new_xy[:, 1].round(3),
        "pixel_x": tissue.pixel_xy[:, 0].round(2), "pixel_y": tissue.pixel_xy[:, 1].round(2),
        "selected": 1})
    frame = frame.sort_values(["y", "x"], kind="stable")
    return frame[SPOT_COLUMNS].to_csv(sep="\t", index=False, lineterminator="\n")


def write_section(root: Path, rng: np.random.Generator, programme: Programme, batch: Batch,
                  stain: Stain, patient: str, sample: str, grid: int, mpp: float) -> tuple[int, int]:
    """Draw one section and write its counts, spot file, image and truth under ``root``."""
    tissue = make_tissue(rng, grid, mpp)
    fractions, density = tissue.spot_composition()
    expr = draw_expression(rng, programme, batch, fractions, density, tissue.pixel_xy, mpp)
    n_listed = len(tissue.array_xy)
    withheld = rng.choice(n_listed, size=int(rng.integers(1, 4)), replace=False)
    barcodes = [f"{x}x{y}" for x, y in tissue.array_xy]
    counted = np.array(sorted(set(range(n_listed)) - set(withheld.tolist()),
                              key=lambda i: barcodes[i]))  # published tables sort ids as text
    rgb = render(rng, tissue, stain.jittered(rng))

    paths = {"counts": root / "data" / "ST-cnts" / f"{sample}.tsv.gz",
             "spots": root / "data" / "ST-spotfiles" / f"{sample}_selection.tsv",
             "image": root / "data" / "ST-imgs" / patient / sample / f"{sample}_HE.jpg",
             "truth": root / "truth" / f"{sample}.npz"}
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    paths["counts"].write_bytes(counts_tsv_gz(expr.counts[counted],
                                              [barcodes[i] for i in counted], programme.genes))
    paths["spots"].write_text(spots_tsv(tissue))
    Image.fromarray(rgb).save(paths["image"], format="JPEG", quality=JPEG_QUALITY)
    np.savez_compressed(
        paths["truth"], barcode=np.array(barcodes)[counted],
        withheld_barcode=np.array(barcodes)[withheld],
        array_xy=tissue.array_xy[counted], pixel_xy=tissue.pixel_xy[counted],
        domain=fractions[counted].argmax(1), domain_fraction=fractions[counted],
        domain_names=np.array(DOMAINS), density=density[counted],
        library=expr.library[counted], mean=expr.mean[counted].astype(np.float32),
        genes=programme.genes, gene_role=programme.role, pi=programme.pi, theta=programme.theta,
        ligand_index=programme.ligand_index, ligand_domain=programme.ligand_domain,
        receiver_index=programme.receiver_index, receiver_pair=programme.receiver_pair,
        receiver_beta=programme.receiver_beta, ligand_activity=expr.activity[counted],
        neighbor_signal=expr.signal[counted], neighbor_sigma_um=NEIGHBOUR_SIGMA_UM,
        neighbor_radius_um=NEIGHBOUR_RADIUS_UM, patient=patient,
        patient_log_shift=batch.log_shift, patient_depth=batch.depth,
        patient_ambient=batch.ambient, stain=np.stack([stain.haematoxylin, stain.eosin]),
        mpp=mpp, spacing_px=tissue.spacing_px)
    return len(counted), n_listed


TRUTH_README = (
    f"{TRUTH_MARKER}: truth/{{S}}.npz holds, per counted spot in count-table order of "
    "barcode, the true domain (argmax of domain_fraction over the 100 um spot), nuclear density, "
    "library factor and ZINB mean (N x G, before zero inflation pi); per gene its role "
    "(marker:<domain>, ligand, receiver, housekeeping, rare, noise), pi and theta; the "
    "interaction structure (receiver_index driven by ligand receiver_pair with log-fold "
    "receiver_beta per unit neighbor_signal, the Gaussian-weighted ligand_activity of spots "
    "within neighbor_radius_um); and the patient's batch shift and stain.\n")


def write_checksums(root: Path) -> None:
    """``SHA256SUMS`` of every data file, in ``sha256sum`` format with ``./`` paths."""
    files = sorted(p for p in (root / "data").rglob("*") if p.is_file())
    lines = [f"{sha256_file(p)}  ./{p.relative_to(root).as_posix()}\n" for p in files]
    (root / "SHA256SUMS").write_text("".join(lines))


def simulate(out_dir: Path, n_patients: int = 3, sections_per_patient: int = 2, grid: int = 16,
             n_genes: int = 80, mpp: float = 2.0, seed: int = 0, interactions: bool = True,
             expression_shift: float = 1.0, stain_shift: float = 1.0) -> list[SimulatedSection]:
    """Write ``n_patients`` x ``sections_per_patient`` sections to ``out_dir`` (replaced whole).

    Deterministic under ``seed``: the same arguments give byte-identical files.
    ``interactions=False`` switches the ligand → receiver effect off (receivers then follow
    their own spot's morphology only): the control where spatial context should not help.
    ``expression_shift`` and ``stain_shift`` scale how much patients differ (their batch
    shift of expression, their stain); at 1 the files are those of the unscaled simulator,
    and any scale leaves every section's tissue (domains, spot grid) as it was.
    """
    check_arguments(n_patients, sections_per_patient, grid, n_genes, mpp)
    check_shifts(expression_shift, stain_shift)
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    root_seq = np.random.SeedSequence(seed)
    programme_seq, *patient_seqs = root_seq.spawn(1 + n_patients)
    programme = make_programme(np.random.default_rng(programme_seq), n_genes)
    if not interactions:
        programme = dataclasses.replace(programme,
                                        receiver_beta=np.zeros_like(programme.receiver_beta))
    plan = []
    for p, patient_seq in enumerate(patient_seqs, start=1):
        batch_seq, *section_seqs = patient_seq.spawn(1 + sections_per_patient)
        batch_rng = np.random.default_rng(batch_seq)
        batch = Batch.draw(batch_rng, programme, expression_shift)
        stain = Stain.draw(batch_rng, stain_shift)
        for s, section_seq in enumerate(section_seqs, start=1):
            plan.append((f"P{p}", f"P{p}S{s}", batch, stain, section_seq))

    sections = []
    with atomic_output(out_dir) as tmp:
        tmp.mkdir()
        for patient, sample, batch, stain, section_seq in tqdm(plan, desc="simulate", unit="section"):
            n_spots, n_listed = write_section(tmp, np.random.default_rng(section_seq), programme,
                                              batch, stain, patient, sample, grid, mpp)
            sections.append(SimulatedSection(
                sample=sample, patient=patient,
                counts=out_dir / "data" / "ST-cnts" / f"{sample}.tsv.gz",
                spots=out_dir / "data" / "ST-spotfiles" / f"{sample}_selection.tsv",
                image=out_dir / "data" / "ST-imgs" / patient / sample / f"{sample}_HE.jpg",
                truth=out_dir / "truth" / f"{sample}.npz", n_spots=n_spots, n_listed=n_listed))
        (tmp / "truth" / "README").write_text(TRUTH_README)
        write_checksums(tmp)
    log.info("simulated %d sections (%d patients, %d genes, %.2f µm/px) in %s",
             len(sections), n_patients, n_genes, mpp, out_dir)
    return sections
