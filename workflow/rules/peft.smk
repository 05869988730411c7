# Spectral finetuning side by side with the PEFT methods (the paper's Section 3.3, Table 1, Figure 5, Table 5).
# The runs themselves are finetunes (train.smk's rule finetune, the method in their config entry); this stage
# builds the prefix caches fig5's runs start from, and collects the runs into table1, table5 and fig5.


include: "inputs/peft.smk"


wildcard_constraints:
    cache=alternatives(PLAN.prefix_caches),
    peftrun=alternatives(sorted({c["model"] for c in PLAN.peft_table_cells()})),


rule prefix_cache:
    input:
        unpack(prefix_cache_inputs),
    output:
        temp(R("peft/cache/{cache}.safetensors")),  # ~0.5 GB for MiniLM on rotten_tomatoes: gone after use
    log:
        L("peft/cache/{cache}.log"),
    params:
        settings=prefix_cache_settings,
    threads: PLAN.threads("prefix_cache")  # torch's threads (config `threads:`, default 8); capped at --cores
    script:
        "../scripts/prefix_cache.py"


rule table1:
    input:
        runs=peft_run_dirs(PLAN.peft_table_cells()),
    output:
        csv=report(R("table1.csv"), caption="../report/table1.rst", category="PEFT"),
        md=R("table1.md"),
        tex=R("table1.tex"),
        provenance=R("table1.provenance.json"),
    log:
        L("figures/table1.log"),
    params:
        cells=PLAN.peft_table_cells(),
        columns=PEFT_COLUMNS,
        paper=PLAN.peft.get("paper_rows", False) if PLAN.peft else False,
        provenance=PROVENANCE,
    script:
        "../scripts/table1.py"


rule table5:
    output:
        csv=report(R("table5.csv"), caption="../report/table5.rst", category="PEFT"),
        md=R("table5.md"),
        tex=R("table5.tex"),
        provenance=R("table5.provenance.json"),
    log:
        L("figures/table5.log"),
    params:
        settings=PLAN.table5_settings(),
        columns=PEFT_COLUMNS,
        provenance=PROVENANCE,
    script:
        "../scripts/table5.py"


rule peft_sweep_table:
    input:
        runs=peft_run_dirs(PLAN.peft_sweep_points()),
    output:
        R("peft/fig5.csv"),
    log:
        L("peft/fig5.log"),
    params:
        points=PLAN.peft_sweep_points(),
    script:
        "../scripts/peft_sweep_table.py"


rule fig5:
    input:
        table=R("peft/fig5.csv"),
        reference=[R(f"models/{c['model']}") for c in PLAN.peft_reference_cells()],
        style=STYLE,
    output:
        pdf=report(R("fig5.pdf"), caption="../report/fig5.rst", category="PEFT"),
        png=R("fig5.png"),
    log:
        L("figures/fig5.log"),
    params:
        cells=PLAN.peft_reference_cells(),
        task=PLAN.peft["sweeps"]["task"] if PLAN.peft and PLAN.peft.get("sweeps") else "",
        provenance=PROVENANCE,
    script:
        "../scripts/fig5.py"


# Not part of `all`: the learning rates of table1's methods chosen on validation (peft.methods.<row>.lr_candidates;
# specbasis.plan.peft). Each candidate trains once on peft.select_lr's task with its test split withheld.
rule lr_selection:
    input:
        runs=peft_run_dirs(PLAN.lr_selection_cells()),
    output:
        R("peft/lr_selection.csv"),
    log:
        L("peft/lr_selection.log"),
    params:
        cells=PLAN.lr_selection_cells(),
    script:
        "../scripts/lr_selection.py"


# Beyond the paper: every table1 run against its pretrained model, as a pair would be (no pairs written by hand):
# the matrices it changed, their top vectors' alignment and intruder dimensions (specbasis.analysis.intruders).
rule method_basis:
    input:
        pretrained=R(f"weights/{PLAN.peft['base']}.h5") if PLAN.peft else [],
        svd=R(f"svd/{PLAN.peft['base']}.h5") if PLAN.peft else [],
        finetuned=R("weights/{peftrun}.h5"),
    output:
        R("peft/basis/{peftrun}.csv"),
    log:
        L("peft/basis/{peftrun}.log"),
    params:
        top=10,
    script:
        "../scripts/method_basis.py"


rule fig22:
    input:
        basis=peft_basis_tables(),
        runs=peft_run_dirs(PLAN.peft_table_cells()),
        style=STYLE,
    output:
        pdf=report(R("fig22.pdf"), caption="../report/fig22.rst", category="PEFT"),
        png=R("fig22.png"),
    log:
        L("figures/fig22.log"),
    params:
        cells=PLAN.peft_table_cells(),
        provenance=PROVENANCE,
    script:
        "../scripts/basis_by_method.py"


rule table6:
    input:
        basis=peft_basis_tables(),
        runs=peft_run_dirs(PLAN.peft_table_cells()),
    output:
        csv=report(R("table6.csv"), caption="../report/table6.rst", category="PEFT"),
        md=R("table6.md"),
        tex=R("table6.tex"),
        provenance=R("table6.provenance.json"),
    log:
        L("figures/table6.log"),
    params:
        cells=PLAN.peft_table_cells(),
        provenance=PROVENANCE,
    script:
        "../scripts/basis_by_method.py"
