"""Pretraining dynamics (the paper's second claim): a small ViT masked autoencoder pretrained at several data
scales, then post-trained, its singular vectors followed."""
