# Analyses: tidy CSVs per pair, computed from the SVD stores.


rule alignment:
    input:
        unpack(pair_svds),
    output:
        "results/alignment/{pair}.csv",
    log:
        "logs/alignment/{pair}.log",
    params:
        max_rank=config["alignment"]["max_rank"],
    conda:
        "../../envs/specbasis.yaml"
    script:
        "../scripts/alignment.py"
