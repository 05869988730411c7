"""The kinds of matrix a transformer layer has (the last part of a canonical matrix id, specbasis.io.namemaps).

Torch-free, so that config checks (specbasis.methods.spec) can name them without importing torch.
"""
KINDS = ("ffn_in", "ffn_out", "attn_q", "attn_k", "attn_v", "attn_o", "xattn_q", "xattn_k", "xattn_v", "xattn_o")
SELF_KINDS = KINDS[:6]       # what every transformer layer has
CROSS_KINDS = KINDS[6:]      # decoder cross-attention
FFN_KINDS = ("ffn_in", "ffn_out")
STACKS = ("enc", "dec")
