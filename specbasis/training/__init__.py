"""Finetuning a pretrained model by a method of specbasis.methods: the orchestration, the prefix cache of
frozen blocks."""
