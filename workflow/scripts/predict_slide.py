"""Rule predict_slide: stflow.deploy.predict_slide.predict_slides, on the configured device."""

from _job import device, stage

with stage(snakemake):
    from stflow.deploy.predict_slide import SlideOptions, predict_slides

    p = snakemake.params
    predict_slides([snakemake.input.slide], snakemake.input.model, out_dir=p.out_dir,
                   names=[snakemake.wildcards.slide], um_per_px=p.um_per_px,
                   options=SlideOptions(**p.options, device=device()))
