import os
import sys
from typing import Optional, Tuple

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))

import lstm1997  # noqa: E402,F401  (registers torch.ops.lstm1997)

class Holder(torch.nn.Module):
    """A model holding an LSTM, as TorchScript scripts it: lstm1997.LSTM declares two forward
    overloads (tensor, PackedSequence), as torch.nn.LSTM does, and TorchScript compiles an
    overloaded forward only where a caller picks one (a directly scripted torch.nn.LSTM has no
    forward either)."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x: torch.Tensor, hx: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
                ) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        return self.rnn(x, hx)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(params=["cpu-kernels", "generic"])
def implementation(request, monkeypatch):
    """Runs a test on the CPU's own kernels and again on the device-generic implementation
    (csrc/generic, which CUDA and every other device run), which LSTM1997_GENERIC=1 makes the CPU
    run: the core test files use it for all their tests (`pytestmark`), so that the generic code is
    checked against the same references on a machine without a GPU."""
    monkeypatch.setenv("LSTM1997_GENERIC", "1" if request.param == "generic" else "0")
    return request.param


def make_args(T, B, I, H, *, dtype=torch.float64, device="cpu", bias=True, state=True,
              requires_grad=True, seed=0, scale=0.5, cells_per_block=1, gate_feedback=False):
    """Random op arguments: (input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0); with
    cells_per_block S the weights have H + 2H/S gate rows (memory cell blocks); with gate_feedback
    weight_hh and h0 have as many columns (the recurrent state of the paper's network)."""
    G = H + 2 * (H // cells_per_block)
    R = G if gate_feedback else H
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        t = (torch.rand(*shape, generator=gen, dtype=torch.float64) * 2 - 1) * scale
        return t.to(dtype=dtype, device=device).requires_grad_(requires_grad)

    return (
        rand(T, B, I),
        rand(G, I),
        rand(G, R),
        rand(G) if bias else None,
        rand(G) if bias else None,
        rand(B, R) if state else None,
        rand(B, H) if state else None,
    )


def check_packed_module(module, sequences):
    """Runs `module` (float64) on `sequences` packed unsorted, and its parameters through the
    reference stack on each sequence alone: outputs, h_n, s_n and the parameters' gradients of one
    loss must agree to float64 round-off."""
    from reference import reference_stack

    lengths = [len(s) for s in sequences]
    packed = torch.nn.utils.rnn.pack_sequence(sequences, enforce_sorted=False)
    output, (h_n, s_n) = module(packed)
    padded, _ = torch.nn.utils.rnn.pad_packed_sequence(output)
    loss = sum(padded[:n, b].square().sum() for b, n in enumerate(lengths)) + h_n.sum() + s_n.sum()
    grads = torch.autograd.grad(loss, list(module.parameters()))

    params = {name: p.detach().clone().requires_grad_() for name, p in module.named_parameters()}
    outputs, ref_h, ref_s = reference_stack(sequences, params, module.num_layers,
                                            module.bidirectional, truncate=module.truncate,
                                            activation=module.activation,
                                            gate_feedback=module.gate_feedback,
                                            cells_per_block=module.cells_per_block)
    ref_loss = sum(o.square().sum() for o in outputs) + ref_h.sum() + ref_s.sum()
    ref_grads = torch.autograd.grad(ref_loss, list(params.values()))
    for b, n in enumerate(lengths):
        torch.testing.assert_close(padded[:n, b], outputs[b], rtol=1e-10, atol=1e-10)
    for a, b in zip([h_n, s_n, *grads], [ref_h, ref_s, *ref_grads]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
