"""Double backward through lstm1997::lstm (backward with create_graph=True, then backward through
the gradient): gradient penalties, MAML, Hessian-vector products. Exact BPTT must pass
gradgradcheck; the truncated gradient's derivative must be what autograd gives on the plain-PyTorch
loop with the recurrent input detached (tests/reference.py), in float64. The first-order backward
runs on the CPU kernels and on the generic implementation (conftest.py); the differentiable
gradient is the generic implementation run again under autograd (csrc/autograd.cpp)."""
import pytest
import torch

from conftest import make_args
from reference import reference_lstm

import lstm1997

pytestmark = pytest.mark.usefixtures("implementation")

f64 = torch.float64
BATCH_SIZES = torch.tensor([3, 2, 2, 1])  # packed: sequences of lengths 4, 3, 1


@pytest.mark.parametrize("cells_per_block, gate_feedback", [(1, False), (2, False), (2, True)])
@pytest.mark.parametrize("activation", ["tanh", "paper"])
def test_gradgradcheck_exact(cells_per_block, gate_feedback, activation):
    args = make_args(4, 2, 3, 4, cells_per_block=cells_per_block, gate_feedback=gate_feedback,
                     scale=0.8)

    def layer(*args):
        return lstm1997.lstm(*args, truncate=False, activation=activation,
                             cells_per_block=cells_per_block, gate_feedback=gate_feedback)

    assert torch.autograd.gradgradcheck(layer, args)


def gradient_penalty_gradients(layer, args):
    """The gradient of a gradient penalty: sum of squares of d loss / d every argument."""
    args = [a.detach().clone().requires_grad_() for a in args]
    output, h_n, s_n = layer(*args)
    loss = output.square().sum() + (h_n * torch.linspace(-1, 1, h_n.shape[-1], dtype=f64)).sum() \
        + s_n.sum()
    first = torch.autograd.grad(loss, args, create_graph=True, allow_unused=True,
                                materialize_grads=True)
    penalty = sum(g.square().sum() for g in first)
    return torch.autograd.grad(penalty, args, allow_unused=True, materialize_grads=True)


@pytest.mark.parametrize("truncate", [True, False])
@pytest.mark.parametrize("cells_per_block, gate_feedback", [(1, False), (2, False), (3, True)])
@pytest.mark.parametrize("activation", ["tanh", "paper"])
def test_gradient_penalty_equals_the_reference(truncate, cells_per_block, gate_feedback,
                                               activation):
    args = make_args(5, 2, 3, 6, cells_per_block=cells_per_block, gate_feedback=gate_feedback,
                     scale=0.8)
    ours = gradient_penalty_gradients(
        lambda *a: lstm1997.lstm(*a, truncate=truncate, activation=activation,
                                 cells_per_block=cells_per_block, gate_feedback=gate_feedback),
        args)
    expected = gradient_penalty_gradients(
        lambda *a: reference_lstm(*a, truncate=truncate, activation=activation,
                                  gate_feedback=gate_feedback, cells_per_block=cells_per_block),
        args)
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("truncate", [True, False])
def test_packed_module_double_backward(truncate):
    """Packed sequences through the module: the penalty's gradient against each sequence run
    alone (dense) through the same module."""
    torch.manual_seed(0)
    module = lstm1997.LSTM(2, 3, truncate=truncate, dtype=f64)
    sequences = [torch.randn(n, 2, dtype=f64) for n in (4, 3, 1)]

    def penalty_gradients(run):
        module.zero_grad()
        loss = run()
        first = torch.autograd.grad(loss, list(module.parameters()), create_graph=True)
        sum(g.square().sum() for g in first).backward()
        return [p.grad.clone() for p in module.parameters()]

    def packed():
        output, (h_n, s_n) = module(torch.nn.utils.rnn.pack_sequence(sequences))
        return output.data.square().sum() + h_n.sum() + s_n.sum()

    def one_by_one():
        total = 0
        for sequence in sequences:
            output, (h_n, s_n) = module(sequence.unsqueeze(1))
            total = total + output.square().sum() + h_n.sum() + s_n.sum()
        return total

    for a, b in zip(penalty_gradients(packed), penalty_gradients(one_by_one)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_hessian_vector_product():
    """torch.autograd.functional.hvp (double backward) against the reference loop's."""
    x, w_ih, w_hh, b_ih, b_hh, h0, s0 = make_args(4, 2, 3, 4, requires_grad=False, scale=0.8)
    vector = torch.randn_like(w_hh)

    def loss_of(layer):
        return lambda w: layer(x, w_ih, w, b_ih, b_hh, h0, s0, truncate=False)[0].square().sum()

    _, ours = torch.autograd.functional.hvp(loss_of(lstm1997.lstm), w_hh, vector)
    _, expected = torch.autograd.functional.hvp(loss_of(reference_lstm), w_hh, vector)
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-10)


def test_plain_backward_keeps_the_kernels():
    """Without create_graph the first-order gradient comes from the backward op (no recompute):
    the generic forward's pointwise ops do not run in the backward pass."""
    args = make_args(4, 2, 3, 4)
    output, h_n, s_n = lstm1997.lstm(*args)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        (output.sum() + h_n.sum() + s_n.sum()).backward()
    names = {event.name for event in profile.events()}
    assert "lstm1997::_lstm_backward" in names and "lstm1997::_lstm_forward" not in names
    assert "aten::addmm" not in names  # the differentiable recompute's recurrent products


def test_bias_gradients_of_a_penalty_do_not_share_storage():
    args = make_args(3, 2, 2, 3)
    output, _, _ = lstm1997.lstm(*args)
    g_ih, g_hh = torch.autograd.grad(output.square().sum(), [args[3], args[4]], create_graph=True)
    torch.testing.assert_close(g_ih, g_hh)
    assert g_ih.data_ptr() != g_hh.data_ptr()
