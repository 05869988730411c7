# Analyses: tidy CSVs per pair (or per model), computed from the weights and SVD stores.


include: "inputs/analyses.smk"


rule alignment:
    input:
        unpack(pair_svds),
    output:
        "results/alignment/{pair}.csv",
    log:
        "logs/alignment/{pair}.log",
    params:
        max_rank=config["alignment"]["max_rank"],
    script:
        "../scripts/alignment.py"


rule spectra:
    input:
        unpack(pair_svds),
    output:
        per_matrix="results/spectra/{pair}.csv",
        per_rank="results/spectra/{pair}.ranks.csv",
    log:
        "logs/spectra/{pair}.log",
    script:
        "../scripts/spectra.py"


rule energy:
    input:
        "results/svd/{model}.h5",
    output:
        "results/energy/{model}.csv",
    log:
        "logs/energy/{model}.log",
    script:
        "../scripts/energy.py"


rule delta_svd:
    input:
        unpack(pair_weights),
    output:
        "results/delta/{pair}.h5",
    log:
        "logs/delta/{pair}.log",
    params:
        rank=config["svd"]["rank"],
        method=config["svd"]["method"],
        device=config["device"],
    threads: PLAN.threads("delta_svd")  # torch's threads (config `threads:`, default 8); capped at --cores
    script:
        "../scripts/delta_svd.py"


rule cumgrad:
    input:
        delta="results/delta/{pair}.h5",
        pretrained=pretrained_svd,
    output:
        "results/cumgrad/{pair}.csv",
    log:
        "logs/cumgrad/{pair}.log",
    params:
        max_rank=config["alignment"]["max_rank"],
    script:
        "../scripts/cumgrad.py"


rule generalization:
    input:
        alignment=expand("results/alignment/{pair}.csv", pair=PLAN.tested_pairs),
        metrics=finetune_metrics(),
    output:
        tests="results/generalization.csv",
        similarity="results/generalization.pairs.csv",
    log:
        "logs/generalization.log",
    params:
        pairs=PLAN.tested_pair_finetuned(),
        accuracy=PLAN.config_accuracies(),
        alpha=config["generalization"]["alpha"],
    script:
        "../scripts/generalization.py"
