"""The ensemble ops (csrc/ensemble.h): _lstm_ensemble_forward and _lstm_ensemble_backward run E
layers of the same sizes in one call, every tensor with the members in front. On the CPU, members
of the tiny-layer path's sizes run together on it; larger members, and every other device, one
_lstm_forward or _lstm_backward call each. Each member's results are checked against the float64
reference loop on that member alone (odd sizes, memory cell blocks, gate feedback, both backward
modes, packed sequences), its results for one thread count against another's bitwise, the checks
of bad input, and torch.library.opcheck (schemas, fake kernels)."""
import pytest
import torch

from conftest import make_args
from reference import reference_lstm

pytestmark = pytest.mark.usefixtures("implementation")

OPS = torch.ops.lstm1997
f64 = torch.float64
BATCH_SIZES = torch.tensor([3, 3, 2, 2, 1])


def members(E, T, B, I, H, S=1, gate_feedback=False, state=True, bias=True):
    """E members' arguments, each drawn apart, stacked (members in front)."""
    drawn = [make_args(T, B, I, H, requires_grad=False, seed=10 + e, scale=0.8, state=state,
                       bias=bias, cells_per_block=S, gate_feedback=gate_feedback)
             for e in range(E)]
    return [None if parts[0] is None else torch.stack(parts) for parts in zip(*drawn)]


def saved(forward):
    """What the backward reads of the forward's results: output, squashed_state, gates."""
    return forward[0], forward[3], forward[4]


def member(args, e):
    return [None if a is None else a[e] for a in args]


def check_against_reference(args, options, truncate, batch_sizes=None, sequences=None):
    """Forward and backward of the ensemble ops against the reference loop, member by member.
    Packed input: `sequences` gives each member's reference input as a list of sequences."""
    forward = OPS._lstm_ensemble_forward(*args, batch_sizes=batch_sizes, **options)
    output, h_n, s_n = forward[:3]
    generator = torch.Generator().manual_seed(5)
    upstream = [torch.randn(t.shape, dtype=f64, generator=generator) for t in (output, h_n, s_n)]
    x, w_ih, w_hh, b_ih, b_hh, h0, s0 = args
    gradients = OPS._lstm_ensemble_backward(*upstream, x, w_ih, w_hh, h0, *saved(forward),
                                            truncate=truncate, batch_sizes=batch_sizes, **options)
    for e in range(x.shape[0]):
        mine = [t.clone().requires_grad_() if t is not None else None for t in member(args, e)]
        if sequences is None:
            ref_out, ref_h_n, ref_s_n = reference_lstm(*mine, truncate=truncate, **options)
            got_out = output[e]
        else:  # each sequence alone; output compared in packed row order
            pieces = []
            ref_h_n, ref_s_n = [], []
            for b, rows in enumerate(sequences):
                out_b, h_b, s_b = reference_lstm(mine[0][rows].unsqueeze(1), *mine[1:5],
                                                 mine[5][b:b + 1], mine[6][b:b + 1],
                                                 truncate=truncate, **options)
                pieces.append((rows, out_b.squeeze(1)))
                ref_h_n.append(h_b)
                ref_s_n.append(s_b)
            ref_out = torch.zeros_like(output[e])
            for rows, out_b in pieces:
                ref_out = ref_out.index_put((torch.tensor(rows),), out_b)
            ref_h_n, ref_s_n = torch.cat(ref_h_n), torch.cat(ref_s_n)
            got_out = output[e]
        for got, want in zip((got_out, h_n[e], s_n[e]), (ref_out, ref_h_n, ref_s_n)):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
        loss = sum((t * u[e]).sum() for t, u in zip((ref_out, ref_h_n, ref_s_n), upstream))
        given = [t for t in mine if t is not None]
        wanted = dict(zip(map(id, given), torch.autograd.grad(loss, given, allow_unused=True)))
        want = [None if t is None else wanted[id(t)] for t in mine]
        grad_input, grad_w_ih, grad_w_hh, grad_bias, grad_h0, grad_s0 = gradients
        pairs = [(grad_input, want[0]), (grad_w_ih, want[1]), (grad_w_hh, want[2])]
        if want[3] is not None:
            pairs.append((grad_bias, want[3]))
        if want[5] is not None:
            pairs.append((grad_h0, want[5]))
        if want[6] is not None:
            pairs.append((grad_s0, want[6]))
        for got, expected in pairs:
            if expected is None:  # h0 under truncation reaches nothing
                assert not got[e].any()
            else:
                torch.testing.assert_close(got[e], expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("H,S", [(1, 1), (3, 3), (5, 1), (12, 3), (32, 1), (33, 1)])
@pytest.mark.parametrize("B", [1, 2, 7, 9])
@pytest.mark.parametrize("gate_feedback", [False, True])
@pytest.mark.parametrize("truncate", [True, False])
def test_each_member_matches_the_reference(H, S, B, gate_feedback, truncate):
    """H = 33 and (B = 9 without blocks) leave the tiny-layer path: members one call each."""
    activation = "paper" if (H + B) % 2 else "tanh"
    args = members(3, 4, B, 3, H, S, gate_feedback, state=B != 2, bias=B != 7)
    check_against_reference(args, dict(activation=activation, cells_per_block=S,
                                       gate_feedback=gate_feedback), truncate)


@pytest.mark.parametrize("truncate", [True, False])
def test_packed_sequences(truncate):
    N = int(BATCH_SIZES.sum())
    args = members(2, 5, 3, 2, 4, 2, True)
    args[0] = torch.randn(2, N, 2, dtype=f64)
    starts = [0, *BATCH_SIZES.cumsum(0).tolist()]
    sequences = [[starts[t] + b for t in range(len(BATCH_SIZES)) if BATCH_SIZES[t] > b]
                 for b in range(3)]
    check_against_reference(args, dict(cells_per_block=2, gate_feedback=True), truncate,
                            batch_sizes=BATCH_SIZES, sequences=sequences)


@pytest.mark.parametrize("truncate", [True, False])
def test_results_do_not_depend_on_the_thread_count(truncate):
    args = members(5, 30, 6, 3, 8, 2, True, bias=True)
    args = [a.float() for a in args]
    runs = []
    threads = torch.get_num_threads()
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            forward = OPS._lstm_ensemble_forward(*args, cells_per_block=2, gate_feedback=True)
            upstream = [torch.ones_like(t) for t in forward[:3]]
            backward = OPS._lstm_ensemble_backward(
                *upstream, args[0], args[1], args[2], args[5], *saved(forward), truncate=truncate,
                cells_per_block=2, gate_feedback=True)
            runs.append([*forward, *backward])
    finally:
        torch.set_num_threads(threads)
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert torch.equal(a, b)


def test_output_mask():
    args = members(2, 4, 2, 3, 4)
    forward = OPS._lstm_ensemble_forward(*args)
    upstream = [torch.randn_like(t) for t in forward[:3]]
    backward_args = (*upstream, args[0], args[1], args[2], args[5], *saved(forward))
    full = OPS._lstm_ensemble_backward(*backward_args)
    mask = [False, True, False, True]
    masked = OPS._lstm_ensemble_backward(*backward_args, output_mask=mask)
    for wanted, a, b in zip(mask, masked[:4], full[:4]):
        assert (a is not None) == wanted
        if wanted:
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("gate_feedback", [False, True])
def test_opcheck(gate_feedback):
    S = 2 if gate_feedback else 1
    args = members(3, 5, 2, 3, 4, S, gate_feedback)
    options = dict(cells_per_block=S, gate_feedback=gate_feedback)
    torch.library.opcheck(OPS._lstm_ensemble_forward.default, tuple(args), options)
    forward = OPS._lstm_ensemble_forward(*args, **options)
    upstream = [torch.randn_like(t) for t in forward[:3]]
    for truncate in (True, False):
        torch.library.opcheck(OPS._lstm_ensemble_backward.default,
                              (*upstream, args[0], args[1], args[2], args[5], *saved(forward)),
                              dict(truncate=truncate, **options))


def test_refuses_to_be_differentiated():
    args = members(2, 3, 2, 3, 4)
    with pytest.raises(RuntimeError, match="_lstm_ensemble_forward is not differentiable"):
        OPS._lstm_ensemble_forward(args[0], args[1].requires_grad_(), *args[2:])


def bad_forward(index, value):
    args = members(3, 4, 2, 3, 4)
    args[index] = value
    return args


FORWARD_CASES = [
    ("input without members", bad_forward(0, torch.zeros((), dtype=f64)), RuntimeError,
     r"_lstm_ensemble_forward: input: expected the members in front \(dim 0\)"),
    ("no members", [torch.zeros(0, 4, 2, 3, dtype=f64), *members(3, 4, 2, 3, 4)[1:]],
     RuntimeError, r"input: expected at least one member"),
    ("weight_ih members", bad_forward(1, torch.zeros(2, 12, 3, dtype=f64)), RuntimeError,
     r"weight_ih: expected the 3 members in front \(dim 0, as input has them\), got a tensor of "
     r"shape \[2, 12, 3\]"),
    ("h0 members", bad_forward(5, torch.zeros(2, 4, dtype=f64)), RuntimeError,
     r"h0: expected the 3 members in front"),
    ("weight_hh shape", bad_forward(2, torch.zeros(3, 12, 5, dtype=f64)), RuntimeError,
     r"weight_hh: expected shape"),
    ("s0 dtype", bad_forward(6, torch.zeros(3, 2, 4)), TypeError, r"s0: expected dtype"),
]


@pytest.mark.parametrize("args,exc,pattern", [c[1:] for c in FORWARD_CASES],
                         ids=[c[0] for c in FORWARD_CASES])
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_forward_errors(args, exc, pattern, device):
    args = [a.to(device) if a is not None else None for a in args]
    with pytest.raises(exc, match=pattern):
        OPS._lstm_ensemble_forward(*args)


def backward_args():
    args = members(3, 4, 2, 3, 4)
    forward = OPS._lstm_ensemble_forward(*args)
    return [*(torch.ones_like(t) for t in forward[:3]), args[0], args[1], args[2], args[5],
            *saved(forward)]


def bad_backward(index, value):
    args = backward_args()
    args[index] = value
    return args


BACKWARD_CASES = [
    ("grad_h_n members", bad_backward(1, torch.zeros(2, 4, dtype=f64)), RuntimeError,
     r"_lstm_ensemble_backward: grad_h_n: expected the 3 members in front"),
    ("gates members", bad_backward(9, torch.zeros(1, 4, 2, 12, dtype=f64)), RuntimeError,
     r"gates: expected the 3 members in front"),
    ("output shape", bad_backward(7, torch.zeros(3, 5, 2, 4, dtype=f64)), RuntimeError,
     r"output: expected shape"),
    ("grad_output dtype", bad_backward(0, torch.zeros(3, 4, 2, 4)), TypeError,
     r"grad_output: expected dtype"),
]


@pytest.mark.parametrize("args,exc,pattern", [c[1:] for c in BACKWARD_CASES],
                         ids=[c[0] for c in BACKWARD_CASES])
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_backward_errors(args, exc, pattern, device):
    args = [a.to(device) if a is not None else None for a in args]
    with pytest.raises(exc, match=pattern):
        OPS._lstm_ensemble_backward(*args)
