"""The reference model: the only package that imports torch.

Modules: `artifact` (verify and load TorchScript / torch.export files), `intake` (safe
Pillow decoding and input features; torch-free), `scorer` (batched inference),
`shadow` (the bounded background pipeline the daemon feeds), `decode_pool` (decoding in
worker processes, past the GIL), `embeddings` (PCA and MMD²
in torch), `digits` (a tiny real model for tests and the demo).
"""
