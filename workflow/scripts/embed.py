"""Rule embed: stflow.data.embedding.embed, on the configured device."""

from _job import device, stage

with stage(snakemake):
    from stflow.data.embedding import embed

    embed(snakemake.input[0], encoder=snakemake.wildcards.encoder, out_zarr=snakemake.output[0],
          weights=snakemake.params.weights, batch_size=snakemake.params.batch_size,
          device=device())
