"""Rule cohort: stflow.deploy.cohort.write_cohort over the slides whose check read them."""

from pathlib import Path

from _job import stage

with stage(snakemake):
    from stflow.deploy.cohort import write_cohort

    inp, out, p = snakemake.input, snakemake.output, snakemake.params
    h5ads = {Path(path).stem: path for path in inp.h5ads}
    checks = {Path(path).stem: path for path in inp.checks}
    write_cohort(p.slides, h5ads, checks, p.metadata, p.genes, out.h5ad, out.tsv, out.maps)
