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
    threads: 8  # torch's threads; capped at --cores, so on a laptop these run one at a time
    script:
        "../scripts/svd.py"
