# Figures and tables: one rule and one script each; the shared style file is an input of every figure.


include: "inputs/figures.smk"


rule fig2:
    input:
        tables=pair_tables("alignment"),
        swap=swap_tables(),
        style=STYLE,
    output:
        pdf=report(R("fig2.pdf"), caption="../report/fig2.rst", category="Alignment"),
        png=R("fig2.png"),
    log:
        L("figures/fig2.log"),
    params:
        provenance=PROVENANCE,
    script:
        "../scripts/fig2.py"


rule fig8:
    input:
        tables=pair_tables("alignment"),
        style=STYLE,
    output:
        pdf=report(R("fig8.pdf"), caption="../report/fig8.rst", category="Alignment"),
        png=R("fig8.png"),
    log:
        L("figures/fig8.log"),
    params:
        modality=PLAN.pair_modality(),
        max_rank=config["alignment"]["max_rank"],
        provenance=PROVENANCE,
    script:
        "../scripts/fig8.py"


rule fig7:
    input:
        tables=brain_tables(),
        style=STYLE,
    output:
        pdf=report(R("fig7.pdf"), caption="../report/fig7.rst", category="Alignment"),
        png=R("fig7.png"),
    log:
        L("figures/fig7.log"),
    params:
        modality=PLAN.pair_modality(),
        provenance=PROVENANCE,
    script:
        "../scripts/fig7.py"


rule fig10:
    input:
        tables=pair_tables("alignment"),
        style=STYLE,
    output:
        pdf=report(R("fig10.pdf"), caption="../report/fig10.rst", category="Alignment"),
        png=R("fig10.png"),
    log:
        L("figures/fig10.log"),
    params:
        modality=PLAN.pair_modality(),
        which="vision",
        provenance=PROVENANCE,
    script:
        "../scripts/fig_attention.py"


rule fig11:
    input:
        tables=pair_tables("alignment"),
        style=STYLE,
    output:
        pdf=report(R("fig11.pdf"), caption="../report/fig11.rst", category="Alignment"),
        png=R("fig11.png"),
    log:
        L("figures/fig11.log"),
    params:
        modality=PLAN.pair_modality(),
        which="language",
        provenance=PROVENANCE,
    script:
        "../scripts/fig_attention.py"


rule fig6:
    input:
        tables=pair_tables("spectra", ".ranks.csv"),
        style=STYLE,
    output:
        pdf=report(R("fig6.pdf"), caption="../report/fig6.rst", category="Spectra"),
        png=R("fig6.png"),
    log:
        L("figures/fig6.log"),
    params:
        provenance=PROVENANCE,
    script:
        "../scripts/fig6.py"


rule table4:
    input:
        tables=pair_tables("spectra"),
    output:
        csv=report(R("table4.csv"), caption="../report/table4.rst", category="Spectra"),
        md=R("table4.md"),
        tex=R("table4.tex"),
        provenance=R("table4.provenance.json"),
    log:
        L("figures/table4.log"),
    params:
        provenance=PROVENANCE,
    script:
        "../scripts/table4.py"


rule fig16:
    input:
        tables=energy_tables(),
        style=STYLE,
    output:
        pdf=report(R("fig16.pdf"), caption="../report/fig16.rst", category="Spectra"),
        png=R("fig16.png"),
    log:
        L("figures/fig16.log"),
    params:
        provenance=PROVENANCE,
    script:
        "../scripts/fig16.py"


rule fig3:
    input:
        cumgrad=pair_tables("cumgrad"),
        alignment=pair_tables("alignment"),
        style=STYLE,
    output:
        pdf=report(R("fig3.pdf"), caption="../report/fig3.rst", category="Cumulative gradient"),
        png=R("fig3.png"),
        json=R("fig3.json"),
    log:
        L("figures/fig3.log"),
    params:
        provenance=PROVENANCE,
    script:
        "../scripts/fig3.py"


rule fig19:
    input:
        cumgrad=pair_tables("cumgrad"),
        alignment=pair_tables("alignment"),
        style=STYLE,
    output:
        pdf=report(R("fig19.pdf"), caption="../report/fig19.rst", category="Cumulative gradient"),
        png=R("fig19.png"),
    log:
        L("figures/fig19.log"),
    params:
        provenance=PROVENANCE,
    script:
        "../scripts/fig19.py"


rule fig20:
    input:
        cumgrad=pair_tables("cumgrad"),
        style=STYLE,
    output:
        pdf=report(R("fig20.pdf"), caption="../report/fig20.rst", category="Cumulative gradient"),
        png=R("fig20.png"),
    log:
        L("figures/fig20.log"),
    params:
        provenance=PROVENANCE,
    script:
        "../scripts/fig20.py"


rule fig18:
    input:
        tests=R("generalization.csv"),
        similarity=R("generalization.pairs.csv"),
        style=STYLE,
    output:
        pdf=report(R("fig18.pdf"), caption="../report/fig18.rst", category="Generalization"),
        png=R("fig18.png"),
    log:
        L("figures/fig18.log"),
    params:
        alpha=config["generalization"]["alpha"],
        provenance=PROVENANCE,
    script:
        "../scripts/fig18.py"


rule table2:
    input:
        alignment=modality_tables("vision"),
        metrics=finetune_metrics(),
    output:
        csv=report(R("table2.csv"), caption="../report/table2.rst", category="Pairs"),
        md=R("table2.md"),
        tex=R("table2.tex"),
        provenance=R("table2.provenance.json"),
    log:
        L("figures/table2.log"),
    params:
        pairs=PLAN.modality_pairs("vision"),
        models=PLAN.models,
        provenance=PROVENANCE,
    script:
        "../scripts/pair_table.py"


rule table3:
    input:
        alignment=modality_tables("language"),
        metrics=finetune_metrics(),
    output:
        csv=report(R("table3.csv"), caption="../report/table3.rst", category="Pairs"),
        md=R("table3.md"),
        tex=R("table3.tex"),
        provenance=R("table3.provenance.json"),
    log:
        L("figures/table3.log"),
    params:
        pairs=PLAN.modality_pairs("language"),
        models=PLAN.models,
        provenance=PROVENANCE,
    script:
        "../scripts/pair_table.py"
