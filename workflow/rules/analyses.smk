# Analyses: tidy CSVs per pair (or per model), computed from the weights and SVD stores.


include: "inputs/analyses.smk"


rule alignment:
    input:
        unpack(pair_svds),
    output:
        R("alignment/{pair}.csv"),
    log:
        L("alignment/{pair}.log"),
    params:
        max_rank=config["alignment"]["max_rank"],
    script:
        "../scripts/alignment.py"


rule spectra:
    input:
        unpack(pair_svds),
    output:
        per_matrix=R("spectra/{pair}.csv"),
        per_rank=R("spectra/{pair}.ranks.csv"),
    log:
        L("spectra/{pair}.log"),
    script:
        "../scripts/spectra.py"


rule energy:
    input:
        R("svd/{model}.h5"),
    output:
        R("energy/{model}.csv"),
    log:
        L("energy/{model}.log"),
    script:
        "../scripts/energy.py"


rule delta_svd:
    input:
        unpack(pair_weights),
    output:
        R("delta/{pair}.h5"),
    log:
        L("delta/{pair}.log"),
    params:
        rank=config["svd"]["rank"],
        method=config["svd"]["method"],
        device=config["device"],
    threads: PLAN.threads("delta_svd")  # torch's threads (config `threads:`, default 8); capped at --cores
    script:
        "../scripts/delta_svd.py"


rule cumgrad:
    input:
        delta=R("delta/{pair}.h5"),
        pretrained=pretrained_svd,
    output:
        R("cumgrad/{pair}.csv"),
    log:
        L("cumgrad/{pair}.log"),
    params:
        max_rank=config["alignment"]["max_rank"],
    script:
        "../scripts/cumgrad.py"


rule generalization:
    input:
        alignment=expand(R("alignment/{pair}.csv"), pair=PLAN.tested_pairs),
        metrics=finetune_metrics(),
    output:
        tests=R("generalization.csv"),
        similarity=R("generalization.pairs.csv"),
    log:
        L("generalization.log"),
    params:
        pairs=PLAN.tested_pair_finetuned(),
        accuracy=PLAN.config_accuracies(),
        alpha=config["generalization"]["alpha"],
    script:
        "../scripts/generalization.py"
