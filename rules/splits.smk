rule splits:
    input:
        res("{dataset}", "samples.tsv"),
    output:
        res("{dataset}", "splits.json"),
    params:
        args=splits_args,
        seed=config["seed"],
    log:
        res("{dataset}", "logs/splits.log"),
    benchmark:
        res("{dataset}", "benchmarks/splits.tsv")
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV
    shell:
        "stflow splits --samples {input} --out {output} {params.args} --seed {params.seed} "
        "> {log} 2>&1"
