"""lstm1997::lstm_bidirectional, both directions of one layer in one op: against the float64
reference loop run forwards and backwards, its gradients in both modes, opcheck, and its errors."""
import pytest
import torch
from conftest import make_args
from reference import reference_lstm

# Every test runs on the CPU kernels and on the device-generic implementation (conftest.py).
pytestmark = pytest.mark.usefixtures("implementation")

OPS = torch.ops.lstm1997


def both_directions(T=5, B=3, I=4, H=6, S=1, gate_feedback=False, bias=True, state=True,
                    requires_grad=True):
    forward = make_args(T, B, I, H, bias=bias, state=state, seed=0, cells_per_block=S,
                        gate_feedback=gate_feedback, requires_grad=requires_grad)
    reverse = make_args(T, B, I, H, bias=bias, state=state, seed=1, cells_per_block=S,
                        gate_feedback=gate_feedback, requires_grad=requires_grad)
    h0 = None if forward[5] is None else torch.stack([forward[5], reverse[5]]).detach()
    s0 = None if forward[6] is None else torch.stack([forward[6], reverse[6]]).detach()
    if h0 is not None and requires_grad:
        h0.requires_grad_(), s0.requires_grad_()
    args = (forward[0], *forward[1:5], *reverse[1:5], h0, s0)
    return args


def reference(args, **options):
    x, w_ih, w_hh, b_ih, b_hh, w_ih_r, w_hh_r, b_ih_r, b_hh_r, h0, s0 = args
    pick = lambda state, d: None if state is None else state[d]  # noqa: E731
    out, h, s = reference_lstm(x, w_ih, w_hh, b_ih, b_hh, pick(h0, 0), pick(s0, 0), **options)
    out_r, h_r, s_r = reference_lstm(x.flip(0), w_ih_r, w_hh_r, b_ih_r, b_hh_r, pick(h0, 1),
                                     pick(s0, 1), **options)
    return torch.cat([out, out_r.flip(0)], -1), torch.stack([h, h_r]), torch.stack([s, s_r])


@pytest.mark.parametrize("truncate", [True, False])
@pytest.mark.parametrize("S, gate_feedback, activation", [(1, False, "tanh"), (2, True, "paper"),
                                                          (3, False, "paper")])
@pytest.mark.parametrize("bias, state", [(True, True), (False, False)])
def test_equals_the_reference_both_ways(truncate, S, gate_feedback, activation, bias, state):
    args = both_directions(S=S, gate_feedback=gate_feedback, bias=bias, state=state)
    options = dict(activation=activation, cells_per_block=S, gate_feedback=gate_feedback)
    got = OPS.lstm_bidirectional(*args, truncate=truncate, **options)
    expected = reference(args, truncate=truncate, **options)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    inputs = [a for a in args if a is not None]
    loss = sum((w * t).sum() for w, t in zip((1.0, 0.5, 0.25), got))
    expected_loss = sum((w * t).sum() for w, t in zip((1.0, 0.5, 0.25), expected))
    # (Truncated, h0 reaches the reference loop only through a detached product: no gradient.)
    got_grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    expected_grads = torch.autograd.grad(expected_loss, inputs, allow_unused=True)
    for x, a, b in zip(inputs, got_grads, expected_grads):
        zero = torch.zeros_like(x)
        torch.testing.assert_close(zero if a is None else a, zero if b is None else b,
                                   rtol=1e-10, atol=1e-10)


def test_gradcheck_exact():
    args = both_directions(T=3, B=2, I=2, H=4, S=2, gate_feedback=True)
    assert torch.autograd.gradcheck(
        lambda *a: OPS.lstm_bidirectional(*a, truncate=False, cells_per_block=2,
                                          gate_feedback=True), args)


@pytest.mark.parametrize("truncate", [True, False])
def test_opcheck(truncate):
    torch.library.opcheck(OPS.lstm_bidirectional.default, both_directions(),
                          {"truncate": truncate, "activation": "paper"})


def test_errors_name_the_argument():
    args = list(both_directions(requires_grad=False))
    cases = [
        (5, torch.zeros(18, 5, dtype=torch.float64), r"weight_ih_reverse: expected shape \[18, 4\] \(the shape of weight_ih\)"),
        (6, torch.zeros(18, 5, dtype=torch.float64), r"weight_hh_reverse: expected shape \[18, 6\]"),
        (7, None, r"bias_ih_reverse: expected a tensor \(as bias_ih\), got None"),
        (9, torch.zeros(3, 3, 6, dtype=torch.float64), r"h0: expected shape \(2, batch, width\)"),
        (10, torch.zeros(3, 6, dtype=torch.float64), r"s0: expected shape \(2, batch, width\)"),
        (0, torch.zeros(15, 4, dtype=torch.float64), r"input: expected a 3-D tensor"),
    ]
    for index, value, pattern in cases:
        bad = list(args)
        bad[index] = value
        with pytest.raises(RuntimeError, match=pattern):
            OPS.lstm_bidirectional(*bad)
    with pytest.raises(RuntimeError, match="h0: expected shape"):  # a direction's state: lstm's check
        OPS.lstm_bidirectional(*args[:9], torch.zeros(2, 3, 5, dtype=torch.float64), args[10])
