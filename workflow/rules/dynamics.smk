# Pretraining dynamics (the paper's Section 4.3): an MAE pretrained from scratch per data scale, its
# analysed matrices snapshotted every epoch, then post-trained from the best checkpoint (classify,
# reconstruct on new data, classify with shuffled labels); fig4, fig9, fig21. Off without `dynamics:`.


include: "inputs/dynamics.smk"


wildcard_constraints:
    scale=alternatives(PLAN.scales),
    mode=alternatives(PLAN.dynamics_modes),
    dyndataset=alternatives(PLAN.dynamics_only_datasets),


rule fetch_dynamics_dataset:
    output:
        directory("resources/datasets/{dyndataset}"),
    log:
        L("fetch/datasets/{dyndataset}.log"),
    params:
        fetch=dynamics_fetch_params,
    script:
        "../scripts/fetch.py"


rule pretrain_mae:
    input:
        data=dynamics_pretrain_data,
    output:
        run=directory(R("dynamics/pretrain/{scale}")),
        model=directory(R("models/mae-{scale}")),
    log:
        L("dynamics/pretrain/{scale}.log"),
    params:
        settings=dynamics_pretrain_settings,
        work_dir=dynamics_work_dir,  # resumable state: not an output (Snakemake deletes outputs before a rerun)
    threads: 1  # two 1-thread jobs beat one 2-thread job on this small model
    script:
        "../scripts/pretrain_mae.py"


rule epoch_similarity:
    input:
        run=R("dynamics/pretrain/{scale}"),
    output:
        R("dynamics/pretrain/{scale}.csv"),
    log:
        L("dynamics/similarity/{scale}.log"),
    params:
        max_rank=PLAN.dynamics["max_rank"] if PLAN.dynamics else None,
        scale=dynamics_scale,
    script:
        "../scripts/epoch_similarity.py"


rule posttrain_mae:
    input:
        checkpoint=R("models/mae-{scale}"),
        data=dynamics_posttrain_data,
    output:
        table=R("dynamics/posttrain/{scale}-{mode}.csv"),
        curve=R("dynamics/posttrain/{scale}-{mode}.curve.csv"),
        model=directory(R("models/mae-{scale}-{mode}")),
    log:
        L("dynamics/posttrain/{scale}-{mode}.log"),
    params:
        settings=dynamics_posttrain_settings,
        mode="{mode}",
    threads: 1
    script:
        "../scripts/posttrain_mae.py"


rule fig4:
    input:
        similarity=dynamics_similarity_tables(),
        posttrain=dynamics_posttrain_tables(["classify", "reconstruct"], ends=True),
        style=STYLE,
    output:
        pdf=report(R("fig4.pdf"), caption="../report/fig4.rst", category="Pretraining dynamics"),
        png=R("fig4.png"),
    log:
        L("figures/fig4.log"),
    params:
        top=DYNAMICS_TOP,
        provenance=PROVENANCE,
    script:
        "../scripts/fig4.py"


rule fig9:
    input:
        posttrain=dynamics_posttrain_tables(["classify", "classify_shuffled", "fit", "fit_shuffled"]),
        style=STYLE,
    output:
        pdf=report(R("fig9.pdf"), caption="../report/fig9.rst", category="Pretraining dynamics"),
        png=R("fig9.png"),
    log:
        L("figures/fig9.log"),
    params:
        figure="fig9",
        top=DYNAMICS_TOP,
        provenance=PROVENANCE,
    script:
        "../scripts/fig_posttrain.py"


rule fig21:
    input:
        posttrain=dynamics_posttrain_tables(["classify", "reconstruct"]),
        style=STYLE,
    output:
        pdf=report(R("fig21.pdf"), caption="../report/fig21.rst", category="Pretraining dynamics"),
        png=R("fig21.png"),
    log:
        L("figures/fig21.log"),
    params:
        figure="fig21",
        top=DYNAMICS_TOP,
        provenance=PROVENANCE,
    script:
        "../scripts/fig_posttrain.py"
