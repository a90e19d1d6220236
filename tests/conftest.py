import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))

import lstm1997  # noqa: E402,F401  (registers torch.ops.lstm1997)

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def make_args(T, B, I, H, *, dtype=torch.float64, device="cpu", bias=True, state=True,
              requires_grad=True, seed=0, scale=0.5, cells_per_block=1):
    """Random op arguments: (input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0); with
    cells_per_block S the weights have H + 2H/S gate rows (memory cell blocks)."""
    G = H + 2 * (H // cells_per_block)
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        t = (torch.rand(*shape, generator=gen, dtype=torch.float64) * 2 - 1) * scale
        return t.to(dtype=dtype, device=device).requires_grad_(requires_grad)

    return (
        rand(T, B, I),
        rand(G, I),
        rand(G, H),
        rand(G) if bias else None,
        rand(G) if bias else None,
        rand(B, H) if state else None,
        rand(B, H) if state else None,
    )
