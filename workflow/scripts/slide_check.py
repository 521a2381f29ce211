"""Checkpoint slide_check: stflow.deploy.slide_check.write_slide_check (readable or not, the
job succeeds; the slide's own predict_slide job fails with the reason)."""

import logging

from _job import stage

with stage(snakemake):
    from stflow.deploy.slide_check import write_slide_check

    record = write_slide_check(snakemake.wildcards.slide, snakemake.input.image,
                               snakemake.params.um_per_px, snakemake.output[0])
    if not record["readable"]:
        logging.warning("%s cannot be read; its predict_slide job fails, and the cohort "
                        "lists it as missing: %s", record["slide"], record["reason"])
