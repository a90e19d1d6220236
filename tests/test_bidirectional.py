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


@pytest.mark.parametrize("truncate", [True, False])
def test_packed_reads_each_sequence_backwards_within_its_length(truncate):
    """Packed input: each sequence's reverse direction starts at its own last step; against the
    reference loop on each sequence alone, forwards and backwards."""
    lengths = [6, 6, 4, 1]
    args = both_directions(T=6, B=len(lengths))
    sequences = [args[0][:n, b] for b, n in enumerate(lengths)]
    packed = torch.nn.utils.rnn.pack_sequence(sequences)
    output, h_n, s_n = OPS.lstm_bidirectional(packed.data, *args[1:], truncate=truncate,
                                              batch_sizes=packed.batch_sizes)
    padded, _ = torch.nn.utils.rnn.pad_packed_sequence(
        torch.nn.utils.rnn.PackedSequence(output, packed.batch_sizes))
    loss = padded.square().sum() + h_n.sum() + s_n.sum()
    expected_loss = 0
    for b, n in enumerate(lengths):
        one = (sequences[b].unsqueeze(1), *args[1:9],
               *[None if s is None else s[:, b:b + 1] for s in args[9:]])
        out, h, s = reference(one, truncate=truncate)
        torch.testing.assert_close(padded[:n, b], out[:, 0], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(h_n[:, b], h[:, 0], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(s_n[:, b], s[:, 0], rtol=1e-10, atol=1e-10)
        expected_loss = expected_loss + out.square().sum() + h.sum() + s.sum()
    weights = [a for a in args[1:9] if a is not None]
    for a, b in zip(torch.autograd.grad(loss, weights), torch.autograd.grad(expected_loss, weights)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_packed_needs_the_values_of_batch_sizes():
    args = [a.detach() for a in both_directions(T=3, B=2)]
    data = args[0].reshape(6, -1).to("meta")
    meta = [None if a is None else a.to("meta") for a in args[1:]]
    with pytest.raises(RuntimeError, match="batch_sizes: expected a CPU tensor with values"):
        OPS.lstm_bidirectional(data, *meta, batch_sizes=torch.tensor([2, 2, 2], device="meta"))
