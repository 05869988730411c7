# Interventions: singular vectors of a finetuned model swapped (pretrained, cross-task, random, zero) or
# masked, the model re-evaluated on its finetune's test split after each edit (one load per sweep);
# figures 12-15 (swaps) and 17 (masking). fig2's panels D and E take the swap tables too (figures.smk).


rule swap:
    input:
        model=edited_model_dir,
        svd="results/svd/{edited}.h5",
        pretrained=edited_pretrained_svd,
        cross=edited_cross_svds,
        data=edited_dataset_dir,
    output:
        "results/swap/{edited}.csv",
    log:
        "logs/swap/{edited}.log",
    params:
        settings=swap_settings,
    threads: 8  # torch's threads; capped at --cores
    script:
        "../scripts/swap.py"


rule mask:
    input:
        model=edited_model_dir,
        svd="results/svd/{edited}.h5",
        data=edited_dataset_dir,
    output:
        "results/mask/{edited}.csv",
    log:
        "logs/mask/{edited}.log",
    params:
        settings=mask_settings,
    threads: 8  # torch's threads; capped at --cores
    script:
        "../scripts/mask.py"


rule fig12:
    input:
        tables=swap_tables(),
        style=STYLE,
    output:
        pdf=report("results/fig12.pdf", caption="../report/fig12.rst", category="Interventions"),
        png="results/fig12.png",
    log:
        "logs/figures/fig12.log",
    params:
        group="ffn",
        sources=["pretrained", "random", "random_orthogonal", "zero"],
    script:
        "../scripts/fig_swap.py"


rule fig13:
    input:
        tables=swap_tables(),
        style=STYLE,
    output:
        pdf=report("results/fig13.pdf", caption="../report/fig13.rst", category="Interventions"),
        png="results/fig13.png",
    log:
        "logs/figures/fig13.log",
    params:
        group="ffn",
        sources=["cross"],
    script:
        "../scripts/fig_swap.py"


rule fig14:
    input:
        tables=swap_tables(),
        style=STYLE,
    output:
        pdf=report("results/fig14.pdf", caption="../report/fig14.rst", category="Interventions"),
        png="results/fig14.png",
    log:
        "logs/figures/fig14.log",
    params:
        group="attn",
        sources=["pretrained", "random", "random_orthogonal", "zero"],
    script:
        "../scripts/fig_swap.py"


rule fig15:
    input:
        tables=swap_tables(),
        style=STYLE,
    output:
        pdf=report("results/fig15.pdf", caption="../report/fig15.rst", category="Interventions"),
        png="results/fig15.png",
    log:
        "logs/figures/fig15.log",
    params:
        group="attn",
        sources=["cross"],
    script:
        "../scripts/fig_swap.py"


rule fig17:
    input:
        tables=mask_tables(),
        style=STYLE,
    output:
        pdf=report("results/fig17.pdf", caption="../report/fig17.rst", category="Interventions"),
        png="results/fig17.png",
    log:
        "logs/figures/fig17.log",
    script:
        "../scripts/fig17.py"
