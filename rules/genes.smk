rule genes:
    input:
        st_files,
    output:
        res("{dataset}", "genes.json"),
    params:
        n_top=config["genes"]["n_top"],
        args=genes_args,
    log:
        res("{dataset}", "logs/genes.log"),
    benchmark:
        res("{dataset}", "benchmarks/genes.tsv")
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        ENV
    shell:
        "stflow genes --st {input} --n-top {params.n_top} {params.args} --out {output} "
        "> {log} 2>&1"
