# Figures and tables: one rule and one script each; the shared style file is an input of every figure.


include: "inputs/figures.smk"


rule fig2:
    input:
        tables=pair_tables("alignment"),
        swap=swap_tables(),
        style=STYLE,
    output:
        pdf=report("results/fig2.pdf", caption="../report/fig2.rst", category="Alignment"),
        png="results/fig2.png",
    log:
        "logs/figures/fig2.log",
    script:
        "../scripts/fig2.py"


rule fig8:
    input:
        tables=pair_tables("alignment"),
        style=STYLE,
    output:
        pdf=report("results/fig8.pdf", caption="../report/fig8.rst", category="Alignment"),
        png="results/fig8.png",
    log:
        "logs/figures/fig8.log",
    params:
        modality=PLAN.pair_modality(),
        max_rank=config["alignment"]["max_rank"],
    script:
        "../scripts/fig8.py"


rule fig7:
    input:
        tables=brain_tables(),
        style=STYLE,
    output:
        pdf=report("results/fig7.pdf", caption="../report/fig7.rst", category="Alignment"),
        png="results/fig7.png",
    log:
        "logs/figures/fig7.log",
    params:
        modality=PLAN.pair_modality(),
    script:
        "../scripts/fig7.py"


rule fig10:
    input:
        tables=pair_tables("alignment"),
        style=STYLE,
    output:
        pdf=report("results/fig10.pdf", caption="../report/fig10.rst", category="Alignment"),
        png="results/fig10.png",
    log:
        "logs/figures/fig10.log",
    params:
        modality=PLAN.pair_modality(),
        which="vision",
    script:
        "../scripts/fig_attention.py"


rule fig11:
    input:
        tables=pair_tables("alignment"),
        style=STYLE,
    output:
        pdf=report("results/fig11.pdf", caption="../report/fig11.rst", category="Alignment"),
        png="results/fig11.png",
    log:
        "logs/figures/fig11.log",
    params:
        modality=PLAN.pair_modality(),
        which="language",
    script:
        "../scripts/fig_attention.py"


rule fig6:
    input:
        tables=pair_tables("spectra", ".ranks.csv"),
        style=STYLE,
    output:
        pdf=report("results/fig6.pdf", caption="../report/fig6.rst", category="Spectra"),
        png="results/fig6.png",
    log:
        "logs/figures/fig6.log",
    script:
        "../scripts/fig6.py"


rule table4:
    input:
        tables=pair_tables("spectra"),
    output:
        csv=report("results/table4.csv", caption="../report/table4.rst", category="Spectra"),
        md="results/table4.md",
        tex="results/table4.tex",
    log:
        "logs/figures/table4.log",
    script:
        "../scripts/table4.py"


rule fig16:
    input:
        tables=energy_tables(),
        style=STYLE,
    output:
        pdf=report("results/fig16.pdf", caption="../report/fig16.rst", category="Spectra"),
        png="results/fig16.png",
    log:
        "logs/figures/fig16.log",
    script:
        "../scripts/fig16.py"


rule fig3:
    input:
        cumgrad=pair_tables("cumgrad"),
        alignment=pair_tables("alignment"),
        style=STYLE,
    output:
        pdf=report("results/fig3.pdf", caption="../report/fig3.rst", category="Cumulative gradient"),
        png="results/fig3.png",
        json="results/fig3.json",
    log:
        "logs/figures/fig3.log",
    script:
        "../scripts/fig3.py"


rule fig19:
    input:
        cumgrad=pair_tables("cumgrad"),
        alignment=pair_tables("alignment"),
        style=STYLE,
    output:
        pdf=report("results/fig19.pdf", caption="../report/fig19.rst", category="Cumulative gradient"),
        png="results/fig19.png",
    log:
        "logs/figures/fig19.log",
    script:
        "../scripts/fig19.py"


rule fig20:
    input:
        cumgrad=pair_tables("cumgrad"),
        style=STYLE,
    output:
        pdf=report("results/fig20.pdf", caption="../report/fig20.rst", category="Cumulative gradient"),
        png="results/fig20.png",
    log:
        "logs/figures/fig20.log",
    script:
        "../scripts/fig20.py"


rule fig18:
    input:
        tests="results/generalization.csv",
        similarity="results/generalization.pairs.csv",
        style=STYLE,
    output:
        pdf=report("results/fig18.pdf", caption="../report/fig18.rst", category="Generalization"),
        png="results/fig18.png",
    log:
        "logs/figures/fig18.log",
    params:
        alpha=config["generalization"]["alpha"],
    script:
        "../scripts/fig18.py"


rule table2:
    input:
        alignment=modality_tables("vision"),
        metrics=finetune_metrics(),
    output:
        csv=report("results/table2.csv", caption="../report/table2.rst", category="Pairs"),
        md="results/table2.md",
        tex="results/table2.tex",
    log:
        "logs/figures/table2.log",
    params:
        pairs=PLAN.modality_pairs("vision"),
        models=PLAN.models,
    script:
        "../scripts/pair_table.py"


rule table3:
    input:
        alignment=modality_tables("language"),
        metrics=finetune_metrics(),
    output:
        csv=report("results/table3.csv", caption="../report/table3.rst", category="Pairs"),
        md="results/table3.md",
        tex="results/table3.tex",
    log:
        "logs/figures/table3.log",
    params:
        pairs=PLAN.modality_pairs("language"),
        models=PLAN.models,
    script:
        "../scripts/pair_table.py"
