# Models: pretrained checkpoints put into their library's own naming, and the finetunes made from them.


include: "inputs/train.smk"


rule prepare_model:
    input:
        "resources/models/{fetched}",
    output:
        directory("results/models/{fetched}"),
    log:
        "logs/models/{fetched}.log",
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
        directory("results/models/{finetuned}"),
    log:
        "logs/models/{finetuned}.log",
    params:
        settings=finetune_settings,
    threads: PLAN.threads("finetune")  # torch's threads (config `threads:`, default 8); capped at --cores
    script:
        "../scripts/finetune.py"
