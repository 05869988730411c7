"""Weight analyses of a pair (pretrained -> finetuned): alignment of singular vectors, spectra, the cumulative
gradient, similarity against generalization; and the tables of the PEFT grid's runs."""
