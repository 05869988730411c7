# Spectral finetuning side by side with the PEFT methods (the paper's Section 3.3, Table 1, Figure 5, Table 5).
# The runs themselves are finetunes (train.smk's rule finetune, the method in their config entry); this stage
# builds the prefix caches fig5's runs start from, and collects the runs into table1, table5 and fig5.


wildcard_constraints:
    cache=alternatives(PREFIX_CACHES),


rule prefix_cache:
    input:
        unpack(prefix_cache_inputs),
    output:
        temp("results/peft/cache/{cache}.safetensors"),  # ~0.5 GB for MiniLM on rotten_tomatoes: gone after use
    log:
        "logs/peft/cache/{cache}.log",
    params:
        settings=prefix_cache_settings,
    threads: 8
    script:
        "../scripts/prefix_cache.py"


rule table1:
    input:
        runs=peft_table_inputs(),
    output:
        csv=report("results/table1.csv", caption="../report/table1.rst", category="PEFT"),
        md="results/table1.md",
        tex="results/table1.tex",
    log:
        "logs/figures/table1.log",
    params:
        cells=peft_table_cells(),
        columns=peft_task_columns() if PEFT else {},
        paper=PEFT.get("paper_rows", False) if PEFT else False,
    script:
        "../scripts/table1.py"


rule table5:
    output:
        csv=report("results/table5.csv", caption="../report/table5.rst", category="PEFT"),
        md="results/table5.md",
        tex="results/table5.tex",
    log:
        "logs/figures/table5.log",
    params:
        settings=peft_grid.table5_settings(config) if PEFT else {},
        columns=peft_task_columns() if PEFT else {},
    script:
        "../scripts/table5.py"


rule peft_sweep_table:
    input:
        runs=peft_sweep_inputs(),
    output:
        "results/peft/fig5.csv",
    log:
        "logs/peft/fig5.log",
    params:
        points=peft_sweep_points(),
    script:
        "../scripts/peft_sweep_table.py"


rule fig5:
    input:
        table="results/peft/fig5.csv",
        reference=[f"results/models/{c['model']}" for c in peft_reference_cells()],
        style=STYLE,
    output:
        pdf=report("results/fig5.pdf", caption="../report/fig5.rst", category="PEFT"),
        png="results/fig5.png",
    log:
        "logs/figures/fig5.log",
    params:
        cells=peft_reference_cells(),
        task=PEFT["sweeps"]["task"] if PEFT and PEFT.get("sweeps") else "",
    script:
        "../scripts/fig5.py"
