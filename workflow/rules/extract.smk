# Extract: every weight matrix of a model, by canonical id, in torch Linear orientation (out, in).


include: "inputs/extract.smk"


rule extract_weights:
    input:
        R("models/{model}"),
    output:
        R("weights/{model}.h5"),
    log:
        L("weights/{model}.log"),
    params:
        family=model_family,
    script:
        "../scripts/extract.py"
