# Models: pretrained checkpoints put into their library's own naming, and the finetunes made from them.


include: "inputs/train.smk"


rule prepare_model:
    input:
        "resources/models/{fetched}",
    output:
        directory(R("models/{fetched}")),
    log:
        L("models/{fetched}.log"),
    params:
        family=fetched_family,
        format=fetched_format,
    script:
        "../scripts/prepare_model.py"


rule finetune:
    input:
        base=base_model_dir,
        data=finetune_dataset_dir,
        cache=finetune_prefix_cache,  # fig5's runs only (peft.sweeps.cache_prefix)
        svd=finetune_base_svd,  # method spectral: U_r, V_r from the base model's SVD store
    output:
        directory(R("models/{finetuned}")),
    log:
        L("models/{finetuned}.log"),
    params:
        settings=finetune_settings,
        work_dir=finetune_work_dir,  # resumable state: not an output (Snakemake deletes outputs before a rerun)
    threads: PLAN.threads("finetune")  # torch's threads (config `threads:`, default 8); capped at --cores
    script:
        "../scripts/finetune.py"
