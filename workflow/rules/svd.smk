# SVD: once per matrix, batched by shape; every analysis reads these stores.


rule svd:
    input:
        R("weights/{model}.h5"),
    output:
        R("svd/{model}.h5"),
    log:
        L("svd/{model}.log"),
    params:
        rank=config["svd"]["rank"],
        method=config["svd"]["method"],
        device=config["device"],
    threads: PLAN.threads("svd")  # torch's threads (config `threads:`, default 8); capped at --cores
    script:
        "../scripts/svd.py"
