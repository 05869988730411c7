"""Finetuning methods (full, bitfit, spectral, and peft's LoRA family) and the spectral adapter."""
