# Interventions: singular vectors of a finetuned model swapped (pretrained, cross-task, random, zero) or
# masked, the model re-evaluated on its finetune's test split after each edit (one load per sweep);
# figures 12-15 (swaps) and 17 (masking). fig2's panels D and E take the swap tables too (figures.smk).


include: "inputs/interventions.smk"


rule swap:
    input:
        model=edited_model_dir,
        svd=R("svd/{edited}.h5"),
        pretrained=edited_pretrained_svd,
        cross=edited_cross_svds,
        data=edited_dataset_dir,
    output:
        R("swap/{edited}.csv"),
    log:
        L("swap/{edited}.log"),
    params:
        settings=swap_settings,
    threads: PLAN.threads("swap")  # torch's threads (config `threads:`, default 8); capped at --cores
    script:
        "../scripts/swap.py"


rule mask:
    input:
        model=edited_model_dir,
        svd=R("svd/{edited}.h5"),
        data=edited_dataset_dir,
    output:
        R("mask/{edited}.csv"),
    log:
        L("mask/{edited}.log"),
    params:
        settings=mask_settings,
    threads: PLAN.threads("mask")  # torch's threads (config `threads:`, default 8); capped at --cores
    script:
        "../scripts/mask.py"


# fig12-15: one rule per row of SWAP_FIGURES (a matrix group, the sources drawn), each with its own caption.
for swap_fig, swap in SWAP_FIGURES.items():

    rule:
        name:
            swap_fig
        input:
            tables=swap_tables(),
            style=STYLE,
        output:
            pdf=report(R(f"{swap_fig}.pdf"), caption=f"../report/{swap_fig}.rst", category="Interventions"),
            png=R(f"{swap_fig}.png"),
        log:
            L(f"figures/{swap_fig}.log"),
        params:
            group=swap["group"],
            sources=swap["sources"],
            provenance=PROVENANCE,
        script:
            "../scripts/fig_swap.py"


rule fig17:
    input:
        tables=mask_tables(),
        style=STYLE,
    output:
        pdf=report(R("fig17.pdf"), caption="../report/fig17.rst", category="Interventions"),
        png=R("fig17.png"),
    log:
        L("figures/fig17.log"),
    params:
        provenance=PROVENANCE,
    script:
        "../scripts/fig17.py"
