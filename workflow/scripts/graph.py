"""Rule graph: stflow.data.graph.write_graph."""

from _job import stage

with stage(snakemake):
    from stflow.data.graph import write_graph

    write_graph(snakemake.input[0], snakemake.output[0], k=snakemake.params.k)
