"""A cohort of slides through the workflow: a slide sheet plans one job per slide, one
unreadable slide fails only its own job while the others finish and the cohort table lists it
as missing, and fixing it predicts that slide only."""

from __future__ import annotations

import shutil
from pathlib import Path

import anndata as ad
import pandas as pd
import pytest
from PIL import Image
from test_slide_workflow import jobs_of
from workflow_fixtures import Run

pytestmark = pytest.mark.workflow
MPP = 2.0  # the tiny run's simulated images: 2 µm per pixel


def cohort_sheet(tiny_run, folder: Path) -> Path:
    """Four slides: three crops of the tiny run's H&E images (renamed, one rescaled to half
    the pixels at twice the µm/px) and one truncated JPEG, with two metadata columns."""
    images = tiny_run.workdir / "results" / "tiny" / "raw" / "data" / "ST-imgs"
    sources = sorted(images.rglob("*_HE.jpg"))
    folder.mkdir()
    rows = ["slide\timage\tum_per_px\tarm\tage"]
    for i, (name, arm, age) in enumerate((("s01", "A", "61"), ("s02", "B", "47"),
                                          ("s03", "A", "70"))):
        with Image.open(sources[i % len(sources)]) as image:
            crop = image.crop((0, 0, image.width, image.height * 3 // 4))
            scale = 2 if name == "s02" else 1
            crop = crop.resize((crop.width // scale, crop.height // scale))
            crop.save(folder / f"{name}.png")
        rows.append(f"{name}\t{name}.png\t{MPP * scale}\t{arm}\t{age}")
    data = sources[0].read_bytes()
    (folder / "s04.jpg").write_bytes(data[: len(data) // 3])  # truncated: cannot be decoded
    rows.append(f"s04\ts04.jpg\t{MPP}\tB\t55")
    sheet = folder / "slides.tsv"
    sheet.write_text("\n".join(rows) + "\n")
    return sheet


def own_copy(tiny_run, folder: Path) -> Run:
    """The tiny run copied (times and Snakemake's records kept): the final model this test
    trains is then not found done by the other tests of the shared run."""
    shutil.copytree(tiny_run.workdir, folder, symlinks=True)
    return Run(folder, folder / tiny_run.configfile.name)


def test_a_cohort_sheet_predicts_each_slide_and_tables_them_despite_a_broken_one(tiny_run,
                                                                                 tmp_path):
    sheet = cohort_sheet(tiny_run, tmp_path / "cohort")
    tiny_run = own_copy(tiny_run, tmp_path / "run")
    config = ("--config", f"predict={{sheet: '{sheet}', n_samples: 2}}")
    dry = tiny_run.snakemake("-n", *config)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "Exception" not in dry.stderr  # no rule is asked for a slide named cohort
    jobs = jobs_of(dry.stdout)
    assert (jobs["slide_check"], jobs["predict_slide"], jobs["slide_view"], jobs["cohort"]) \
        == (4, 4, 4, 1)

    run = tiny_run.snakemake("--cores", "2", "--keep-going", *config, timeout=1500)
    assert run.returncode != 0  # s04's own jobs failed ...
    assert "Error in rule predict_slide" in run.stderr and "s04.log" in run.stderr
    log = (tiny_run.results / "logs" / "predict_slide" / "s04.log").read_text()
    assert "s04.jpg" in log and "cannot decode" in log and "Traceback" not in log
    slides = tiny_run.results / "slides"
    cohort = ad.read_h5ad(slides / "cohort.h5ad")  # ... the others finished
    assert list(cohort.obs_names) == ["s01", "s02", "s03"]
    assert cohort.obs["age"].tolist() == [61, 47, 70] and cohort.obs["arm"].tolist()[0] == "A"
    assert (cohort.obs["spots"] > 0).all() and (cohort.obs["tissue_area_mm2"] > 0).all()
    assert cohort.obs.loc["s02", "um_per_px"] == 2 * MPP
    assert cohort.obs["calibration"].tolist() == ["patient"] * 3
    assert (cohort.layers["lower"] <= cohort.X).all() and (cohort.X <= cohort.layers["upper"]).all()
    assert cohort.uns["stflow"]["kind"] == "cohort" and "s04" in cohort.uns["stflow"]["missing"]
    table = pd.read_csv(slides / "cohort.tsv", sep="\t", index_col="slide")
    assert table["status"].to_dict() == {"s01": "predicted", "s02": "predicted",
                                         "s03": "predicted", "s04": "missing"}
    assert "cannot decode" in table.loc["s04", "reason"]
    gene = cohort.var_names[0]
    assert table.loc["s01", gene] == pytest.approx(float(cohort[cohort.obs_names == "s01"].X[0, 0]),
                                                   rel=1e-5)
    assert list((slides / "cohort_maps").glob("*.png"))  # one per gene drawn

    shutil.copy(tmp_path / "cohort" / "s01.png", tmp_path / "cohort" / "s04.jpg")  # fixed
    fixed = tiny_run.snakemake("-n", *config)
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert jobs_of(fixed.stdout) == {"slide_check": 1, "predict_slide": 1, "slide_view": 1,
                                     "cohort": 1, "all": 1}
    again = tiny_run.snakemake("--cores", "2", *config, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert list(ad.read_h5ad(slides / "cohort.h5ad").obs_names) == ["s01", "s02", "s03", "s04"]

    sheet.write_text(sheet.read_text().replace("\t61\n", "\t62\n"))  # metadata only
    edited = tiny_run.snakemake("-n", *config)
    assert jobs_of(edited.stdout) == {"cohort": 1, "all": 1}
