"""specbasis: how finetuning changes the spectral structure of pretrained weight matrices."""
__version__ = "0.1.0"
