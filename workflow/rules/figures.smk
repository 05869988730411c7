# Figures: one rule and one script each; the shared style file is an input of every figure.


rule fig2:
    input:
        tables=alignment_tables(),
        style=STYLE,
    output:
        pdf=report("results/fig2.pdf", caption="../report/fig2.rst", category="Alignment"),
        png="results/fig2.png",
    log:
        "logs/figures/fig2.log",
    conda:
        "../../envs/specbasis.yaml"
    script:
        "../scripts/fig2.py"
