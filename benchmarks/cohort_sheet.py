"""A cohort of 100 slides through the workflow, as issue 26 asks of the slide sheet.

The slides are crops of the six real her2st H&E sections (renamed, rescaled to 100, 75 or
50 % of their pixels with the µm/px to match, saved as JPEG), one of them truncated. The
study is her2st's own (the local mirror), its final model the spatial-free ridge (cheap to
train; the cohort mechanics do not depend on the model). Then, timing each step:

1. a dry run: one slide_check, predict_slide and slide_view job per slide, one cohort;
2. the run with --keep-going: the corrupt slide fails alone, cohort.h5ad has 99 rows and
   cohort.tsv lists the missing slide with its reason;
3. the slide fixed, a dry run (only that slide's jobs and the cohort) and the run.

    .venv/bin/python benchmarks/cohort_sheet.py --work /tmp/cohort100 [--slides 100]

Writes {work}/cohort_sheet.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
MIRROR = REPO.parent / "shared" / "data" / "her2st"
Image.MAX_IMAGE_PIXELS = None  # the her2st sections are 92-megapixel JPEGs, read on purpose
SCALES = (1.0, 0.75, 0.5)
CROP = 0.45  # each crop's side, as a share of its section's


def section_images(mirror: Path) -> dict[str, Path]:
    return {p.parent.name: p for p in sorted((mirror / "data" / "ST-imgs").glob("*/*/*.jpg"))}


def section_mpp(results: Path, section: str) -> float:
    return float(ad.read_h5ad(results / "st" / f"{section}.h5ad", backed="r").uns["mpp"])


def write_crop(source: Path, mpp: float, rng: np.random.Generator, out: Path) -> float:
    """A random crop of ``source`` rescaled by one of SCALES into ``out``; its µm/px."""
    scale = float(rng.choice(SCALES))
    with Image.open(source) as image:
        side_w, side_h = int(image.width * CROP), int(image.height * CROP)
        x0 = int(rng.integers(0, image.width - side_w))
        y0 = int(rng.integers(0, image.height - side_h))
        crop = image.crop((x0, y0, x0 + side_w, y0 + side_h))
        crop = crop.resize((int(side_w * scale), int(side_h * scale)))
        crop.convert("RGB").save(out, quality=90)
    return mpp / scale


def write_sheet(work: Path, results: Path, n: int, corrupt: int, seed: int = 0) -> Path:
    """The slide sheet of ``n`` crops (metadata: the section and patient they came from, the
    scale), slide number ``corrupt`` truncated to a third of its bytes."""
    rng = np.random.default_rng(seed)
    images, folder = section_images(MIRROR), work / "slides"
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(images)
    rows = ["slide\timage\tum_per_px\tsection\tpatient"]
    for i in range(n):
        section = names[i % len(names)]
        out = folder / f"T{i:03d}.jpg"
        um = write_crop(images[section], section_mpp(results, section), rng, out)
        rows.append(f"T{i:03d}\tslides/{out.name}\t{um:.6g}\t{section}\t{section[0]}")
    bad = folder / f"T{corrupt:03d}.jpg"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 3])
    sheet = work / "slides.tsv"
    sheet.write_text("\n".join(rows) + "\n")
    return sheet


def write_config(work: Path, sheet: Path | None) -> Path:
    config = yaml.safe_load((REPO / "config" / "her2st.yaml").read_text())
    config["dataset"]["mirror"] = str(MIRROR)
    config.update(models=["ridge"], search={}, model_params={}, seeds=[0])
    config["predict"] = {"model": "ridge", "n_samples": 1,
                         **({"sheet": str(sheet)} if sheet else {})}
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(work: Path, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile",
                           str(REPO / "Snakefile"), "--directory", str(work), "--configfile",
                           str(work / "config.yaml"), "--cores", "2", *args],
                          capture_output=True, text=True, cwd=work)
    return done, round(time.perf_counter() - start, 1)


def jobs(stdout: str) -> dict[str, int]:
    table = stdout.split("Job stats:")[-1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)
            if m.group(1) != "total"}


def cohort_state(results: Path) -> dict:
    cohort = ad.read_h5ad(results / "slides" / "cohort.h5ad")
    table = pd.read_csv(results / "slides" / "cohort.tsv", sep="\t")
    missing = table[table["status"] == "missing"]
    return {"rows": int(cohort.n_obs), "genes": int(cohort.n_vars),
            "missing": dict(zip(missing["slide"], missing["reason"], strict=True)),
            "spots_median": float(cohort.obs["spots"].median())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--slides", type=int, default=100)
    parser.add_argument("--corrupt", type=int, default=37)
    args = parser.parse_args()
    work, report = args.work.resolve(), {}
    work.mkdir(parents=True, exist_ok=True)
    results = work / "results" / "her2st"
    write_config(work, None)
    done, report["study_s"] = snakemake(work, "final_models")  # the study and its model
    if done.returncode:
        sys.exit(done.stderr[-3000:])
    sheet = write_sheet(work, results, args.slides, args.corrupt)
    write_config(work, sheet)
    dry, report["dry_run_s"] = snakemake(work, "-n")
    report["dry_run_jobs"] = jobs(dry.stdout)
    run, report["run_s"] = snakemake(work, "--keep-going")
    report["run_returncode"] = run.returncode
    report["failed_jobs"] = sorted(set(re.findall(r"Error in rule (\w+):", run.stderr)))
    report["after_run"] = cohort_state(results)
    fixed = work / "slides" / f"T{args.corrupt:03d}.jpg"
    um = write_crop(section_images(MIRROR)["B4"], section_mpp(results, "B4"),
                    np.random.default_rng(1), fixed)
    sheet.write_text(re.sub(rf"(T{args.corrupt:03d}\t[^\t]+\t)[^\t]+", rf"\g<1>{um:.6g}",
                            sheet.read_text()))
    dry, report["fixed_dry_run_s"] = snakemake(work, "-n")
    report["fixed_dry_run_jobs"] = jobs(dry.stdout)
    rerun, report["rerun_s"] = snakemake(work)
    report["rerun_returncode"] = rerun.returncode
    report["after_rerun"] = cohort_state(results)
    (work / "cohort_sheet.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
