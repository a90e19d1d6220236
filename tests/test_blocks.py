"""Memory cell blocks (cells_per_block = S): S cells share one input gate and one output gate.

Every result is compared with the plain-PyTorch loop of tests/reference.py, which builds the
blocks from the definition (each of the K gate columns repeated for its S cells) and
differentiates them with autograd: forward, truncated and exact gradients, packed sequences,
the module, the online ops and torch.compile."""
import pytest
import torch
from conftest import Holder, check_packed_module, make_args
from reference import reference_lstm

import lstm1997

# Every test runs on the CPU kernels and on the device-generic implementation (conftest.py).
pytestmark = pytest.mark.usefixtures("implementation")

OPS = torch.ops.lstm1997
f64 = torch.float64


def op_vs_reference(T, B, I, H, S, *, truncate, activation, bias=True, state=True, seed=0,
                    scale=0.9):
    """(op results, reference results): outputs, h_n, s_n, then gradients of every argument."""
    results = []
    for run in ("op", "reference"):
        args = make_args(T, B, I, H, bias=bias, state=state, seed=seed, scale=scale,
                         cells_per_block=S)
        if run == "op":
            out = OPS.lstm(*args, truncate=truncate, activation=activation, cells_per_block=S)
        else:
            out = reference_lstm(*args, truncate=truncate, activation=activation)
        gen = torch.Generator().manual_seed(seed + 1)
        upstream = [torch.randn(t.shape, generator=gen, dtype=f64) for t in out]
        loss = sum((o * u).sum() for o, u in zip(out, upstream))
        present = [a for a in args if a is not None]
        grads = torch.autograd.grad(loss, present, allow_unused=True)
        grads = [torch.zeros_like(a) if g is None else g for a, g in zip(present, grads)]
        results.append([t.detach() for t in out] + list(grads))
    return results


@pytest.mark.parametrize("H,S", [(4, 2), (6, 3), (8, 4), (6, 6), (5, 1)])
@pytest.mark.parametrize("truncate", [True, False])
@pytest.mark.parametrize("activation", ["tanh", "paper"])
@pytest.mark.parametrize("bias,state", [(True, True), (False, False)])
def test_op_matches_reference(H, S, truncate, activation, bias, state):
    ours, reference = op_vs_reference(7, 3, 4, H, S, truncate=truncate, activation=activation,
                                      bias=bias, state=state)
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_blocks_are_plain_cells_with_tied_gate_rows():
    """A second, independent reading of the definition: a block net computes what plain cells
    compute when each cell's gate rows are copies of its block's row."""
    S, H = 2, 4
    x, w_ih, w_hh, b_ih, b_hh, h0, s0 = make_args(6, 2, 3, H, cells_per_block=S,
                                                  requires_grad=False, scale=1.5)
    K = H // S

    def tied(rows):
        a, z, c = rows.split([K, H, K])
        return torch.cat([a.repeat_interleave(S, 0), z, c.repeat_interleave(S, 0)])

    ours = OPS.lstm(x, w_ih, w_hh, b_ih, b_hh, h0, s0, activation="paper", cells_per_block=S)
    plain = reference_lstm(x, tied(w_ih), tied(w_hh), tied(b_ih), tied(b_hh), h0, s0,
                           activation="paper")
    for a, b in zip(ours, plain):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    untied = tied(w_hh).clone()
    untied[1] += 0.5  # cell 1 gets its own input gate row: no longer a block
    assert not torch.allclose(OPS.lstm(x, tied(w_ih), untied, tied(b_ih), tied(b_hh), h0, s0)[0],
                              ours[0])


def test_gradcheck_exact():
    """Exact BPTT is the derivative of the forward: gradcheck it (the truncated gradient is not a
    derivative, and is compared with the reference above)."""
    args = make_args(4, 2, 3, 4, cells_per_block=2)
    assert torch.autograd.gradcheck(lambda *a: OPS.lstm(*a, truncate=False, activation="paper", cells_per_block=2), args)


@pytest.mark.parametrize("truncate", [True, False])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_module_matches_per_sequence_reference(truncate, bidirectional):
    torch.manual_seed(0)
    I, H, S, layers = 3, 6, 3, 2
    module = lstm1997.LSTM(I, H, layers, bidirectional=bidirectional, truncate=truncate,
                           activation="paper", cells_per_block=S, dtype=f64)
    check_packed_module(module, [torch.randn(n, I, dtype=f64) for n in (5, 2, 4)])


def test_module_and_cell_shapes_and_inference():
    module = lstm1997.LSTM(3, 8, cells_per_block=4)
    assert module.weight_ih_l0.shape == (12, 3) and module.bias_hh_l0.shape == (12,)
    assert "cells_per_block=4" in repr(module)
    cell = lstm1997.LSTMCell(3, 8, cells_per_block=2)
    assert cell.weight_hh.shape == (16, 8)
    x = torch.randn(5, 2, 3)
    with torch.no_grad():  # the inference kernel (nothing kept for backward)
        output, (h_n, s_n) = module(x)
    params = [p.detach() for p in module.parameters()]
    expected = reference_lstm(x, *params)
    torch.testing.assert_close(output, expected[0], rtol=1e-5, atol=1e-6)
    h, s = cell(x[0])
    expected = reference_lstm(x[:1], cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    torch.testing.assert_close(h, expected[1].detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("chunk", [1, 4])
def test_online_gradients_equal_truncated_backward(chunk):
    torch.manual_seed(0)
    T, B, I, H, S = 8, 2, 3, 6, 3
    online = lstm1997.OnlineLSTM(I, H, activation="paper", cells_per_block=S, dtype=f64)
    with torch.no_grad():
        for p in online.parameters():
            p.mul_(3)
    x, targets = torch.randn(T, B, I, dtype=f64), torch.randn(T, B, H, dtype=f64)
    for start in range(0, T, chunk):
        output = online(x[start:start + chunk])
        loss = (output - targets[start:start + chunk]).square().sum()
        online.backward(torch.autograd.grad(loss, output)[0])
    params = {n: p.detach().clone().requires_grad_() for n, p in online.named_parameters()}
    output, _, _ = reference_lstm(x, params["weight_ih_l0"], params["weight_hh_l0"],
                                  params["bias_ih_l0"], params["bias_hh_l0"], activation="paper")
    (output - targets).square().sum().backward()
    for name, p in online.named_parameters():
        torch.testing.assert_close(p.grad, params[name].grad, rtol=1e-10, atol=1e-10)


def test_opcheck():
    args = make_args(5, 3, 4, 6, cells_per_block=3)
    torch.library.opcheck(OPS.lstm.default, args, {"truncate": False, "activation": "paper",
                                                   "cells_per_block": 3})
    plain = [a.detach() for a in args]
    torch.library.opcheck(OPS._lstm_forward.default, plain, {"cells_per_block": 3})
    output, h_n, s_n, squashed_state, gates = OPS._lstm_forward(*plain, cells_per_block=3)
    upstream = [torch.randn_like(t) for t in (output, h_n, s_n)]
    backward_args = (*upstream, plain[0], plain[1], plain[2], plain[5], output, squashed_state,
                     gates)
    torch.library.opcheck(OPS._lstm_backward.default, backward_args, {"cells_per_block": 3})


def test_torch_compile_fullgraph():
    torch.manual_seed(0)
    module = lstm1997.LSTM(3, 4, cells_per_block=2, dtype=f64)
    x = torch.randn(6, 2, 3, dtype=f64)
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    expected = module(x)[0]
    torch.testing.assert_close(compiled(x)[0], expected)


def test_torchscript():
    module = lstm1997.LSTM(3, 4, cells_per_block=2)
    scripted = torch.jit.script(Holder(module))
    x = torch.randn(6, 2, 3)
    torch.testing.assert_close(scripted(x)[0], module(x)[0])


@pytest.mark.parametrize("S,pattern", [(0, "cells_per_block: expected a positive"),
                                       (-2, "cells_per_block: expected a positive"),
                                       (3, "cells_per_block: expected a divisor of hidden_size")])
def test_op_rejects_bad_cells_per_block(S, pattern):
    args = make_args(3, 2, 3, 4, requires_grad=False)
    with pytest.raises(ValueError, match=pattern):
        OPS.lstm(*args, cells_per_block=S)


def test_op_rejects_weights_of_the_wrong_layout():
    plain = make_args(3, 2, 3, 4, requires_grad=False)  # 3H = 12 rows
    with pytest.raises(RuntimeError, match=r"weight_hh: expected shape \(hidden_size \+ "
                                           r"2\*hidden_size/cells_per_block.*\(8, 4\)"):
        OPS.lstm(*plain, cells_per_block=2)
    blocked = make_args(3, 2, 3, 4, requires_grad=False, cells_per_block=2)
    with pytest.raises(RuntimeError, match=r"weight_hh: expected shape \(3\*hidden_size"):
        OPS.lstm(*blocked)
    x, w_ih, w_hh, b_ih, b_hh, h0, s0 = blocked
    with pytest.raises(RuntimeError, match="bias_ih: expected shape"):
        OPS.lstm(x, w_ih, w_hh, b_ih[:-1], b_hh, h0, s0, cells_per_block=2)
    with pytest.raises(RuntimeError, match="weight_ih: expected shape"):
        OPS.lstm(x, w_ih[:-1], w_hh, b_ih, b_hh, h0, s0, cells_per_block=2)


@pytest.mark.parametrize("make", [
    lambda: lstm1997.LSTM(3, 4, cells_per_block=3),
    lambda: lstm1997.LSTM(3, 4, cells_per_block=0),
    lambda: lstm1997.LSTMCell(3, 4, cells_per_block=3),
])
def test_modules_reject_bad_cells_per_block(make):
    with pytest.raises(ValueError, match="cells_per_block"):
        make()
    with pytest.raises(TypeError, match="cells_per_block: expected a positive int, got float"):
        lstm1997.OnlineLSTM(3, 4, cells_per_block=2.0)


def test_no_torch_nn_equivalent():
    with pytest.raises(ValueError, match="cells_per_block: expected 1"):
        lstm1997.LSTM(3, 4, cells_per_block=2).to_torch_lstm()
