# Fetch: models and datasets into resources/, verified and recorded in fetched.json.


include: "inputs/fetch.smk"


rule fetch_model:
    output:
        directory("resources/models/{fetched}"),
    log:
        L("fetch/models/{fetched}.log"),
    params:
        fetch=model_fetch_params,
    script:
        "../scripts/fetch.py"


rule fetch_dataset:
    output:
        directory("resources/datasets/{dataset}"),
    log:
        L("fetch/datasets/{dataset}.log"),
    params:
        fetch=dataset_fetch_params,
    script:
        "../scripts/fetch.py"


if LOCK is not None:  # a suite read from a config file: its lock goes beside it

    rule lock:  # not part of `all`: `snakemake --configfile=config/paper.yaml lock`, then commit the file
        input:
            **locked_resources(),
        output:
            str(LOCK),
        log:
            L("fetch/lock.log"),
        script:
            "../scripts/lock.py"
