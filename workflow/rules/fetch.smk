# Fetch: models and datasets into resources/, verified and recorded in fetched.json.


include: "inputs/fetch.smk"


rule fetch_model:
    output:
        directory("resources/models/{fetched}"),
    log:
        "logs/fetch/models/{fetched}.log",
    params:
        fetch=model_fetch_params,
    script:
        "../scripts/fetch.py"


rule fetch_dataset:
    output:
        directory("resources/datasets/{dataset}"),
    log:
        "logs/fetch/datasets/{dataset}.log",
    params:
        fetch=dataset_fetch_params,
    script:
        "../scripts/fetch.py"
