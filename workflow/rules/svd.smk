# SVD: once per matrix, batched by shape; every analysis reads these stores.


rule svd:
    input:
        "results/weights/{model}.h5",
    output:
        "results/svd/{model}.h5",
    log:
        "logs/svd/{model}.log",
    params:
        rank=config["svd"]["rank"],
        method=config["svd"]["method"],
        device=config["device"],
    threads: PLAN.threads("svd")  # torch's threads (config `threads:`, default 8); capped at --cores
    script:
        "../scripts/svd.py"
