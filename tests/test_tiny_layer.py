"""The tiny-layer path of the CPU kernels (csrc/cpu/tiny_layer.cpp): layers of the paper's sizes
(hidden_size <= 32) run each batch row through all its steps in one loop, forward and backward.
By size it takes every layer with memory cell blocks and every layer of fewer than 8 rows;
LSTM1997_TINY_LAYER=1 forces it wherever it can run (=0 turns it off).

Every configuration is checked against the float64 reference loop at odd sizes (H = 1, 3, 5, 12,
32; B = 1, 2, 7), with memory cell blocks, gate feedback, both backward modes, both activations and
packed sequences; its float32 results against float64; and its results for a thread count against
another's, bitwise.
"""
import pytest
import torch

import lstm1997
from conftest import check_packed_module, make_args
from reference import reference_lstm

OPS = torch.ops.lstm1997

# (H, S): odd sizes, each with plain cells and with memory cell blocks where H has a divisor.
SIZES = [(1, 1), (3, 1), (3, 3), (5, 1), (5, 5), (12, 1), (12, 3), (32, 1), (32, 4)]


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setenv("LSTM1997_TINY_LAYER", "1")


def loss_of(output, h_n, s_n, weights):
    return (output * weights).sum() + h_n.square().sum() + s_n.sum()


def check_gradients(ours, expected, args, seed):
    """The gradients of one loss of (output, h_n, s_n) with respect to every argument given:
    ours against the reference's, to float64 round-off."""
    weights = torch.randn(ours[0].shape, dtype=torch.float64,
                          generator=torch.Generator().manual_seed(seed))
    given = [a for a in args if a is not None]
    grads = torch.autograd.grad(loss_of(*ours, weights), given, allow_unused=True)
    expected_grads = torch.autograd.grad(loss_of(*expected, weights), given, allow_unused=True)
    for grad, expected_grad in zip(grads, expected_grads):
        if expected_grad is None:  # h0 under truncation reaches nothing
            assert grad is None or not grad.any()
        else:
            torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("H,S", SIZES)
@pytest.mark.parametrize("B", [1, 2, 7])
@pytest.mark.parametrize("gate_feedback", [False, True])
@pytest.mark.parametrize("truncate", [True, False])
def test_matches_reference(tiny, H, S, B, gate_feedback, truncate):
    activation = "paper" if (H + B) % 2 else "tanh"
    state = B != 2  # h0 and s0 given, or not
    # One step, and an input of several vector widths (37 features), for some of the sizes.
    T, I = (1, 37) if H in (5, 12) and B == 7 else (6, 3)
    args = make_args(T, B, I, H, cells_per_block=S, gate_feedback=gate_feedback, state=state,
                     seed=H * 100 + B)
    options = dict(truncate=truncate, activation=activation, cells_per_block=S,
                   gate_feedback=gate_feedback)
    ours = OPS.lstm(*args, **options)
    expected = reference_lstm(*args, **options)
    for actual, reference in zip(ours, expected):
        torch.testing.assert_close(actual, reference, rtol=1e-10, atol=1e-10)
    check_gradients(ours, expected, args, seed=1)


@pytest.mark.parametrize("gate_feedback", [False, True])
@pytest.mark.parametrize("S", [1, 3])
@pytest.mark.parametrize("truncate", [True, False])
def test_packed_module_matches_per_sequence_reference(tiny, gate_feedback, S, truncate):
    torch.manual_seed(S)
    module = lstm1997.LSTM(3, 6, truncate=truncate, activation="paper", cells_per_block=S,
                           gate_feedback=gate_feedback, dtype=torch.float64)
    sequences = [torch.randn(n, 3, dtype=torch.float64) for n in (7, 3, 5, 1, 7)]
    check_packed_module(module, sequences)


# The truncated backward of rows that are not lane-packed takes their steps in blocks of 128
# (tiny_layer.cpp, kTruncatedBlockSteps): lengths below, at and across block edges.
@pytest.mark.parametrize("H,S,gate_feedback,I", [(1, 1, True, 2), (4, 2, True, 2),
                                                 (5, 1, False, 3), (12, 3, True, 7),
                                                 (32, 4, True, 2), (6, 3, True, 41)])
@pytest.mark.parametrize("B", [1, 3])
def test_truncated_backward_across_step_blocks(tiny, H, S, gate_feedback, I, B):
    T = 300
    args = make_args(T, B, I, H, cells_per_block=S, gate_feedback=gate_feedback, seed=H + B,
                     scale=0.3)
    options = dict(truncate=True, activation="paper" if H % 2 else "tanh", cells_per_block=S,
                   gate_feedback=gate_feedback)
    ours = OPS.lstm(*args, **options)
    expected = reference_lstm(*args, **options)
    check_gradients(ours, expected, args, seed=2)


@pytest.mark.parametrize("I,S", [(3, 1), (3, 3), (40, 2)])
def test_truncated_packed_sequences_across_step_blocks(tiny, I, S):
    torch.manual_seed(I + S)
    module = lstm1997.LSTM(I, 6, activation="paper", cells_per_block=S, gate_feedback=True,
                           dtype=torch.float64)
    sequences = [torch.randn(n, I, dtype=torch.float64) * 0.5 for n in (129, 300, 128, 1, 257)]
    check_packed_module(module, sequences)


def test_gradcheck_exact(tiny):
    args = make_args(4, 2, 2, 4, cells_per_block=2, gate_feedback=True)
    torch.autograd.gradcheck(
        lambda *a: OPS.lstm(*a, truncate=False, cells_per_block=2, gate_feedback=True), args)


@pytest.mark.parametrize("H,S", [(4, 2), (5, 1), (32, 4)])
def test_float32_matches_float64(tiny, H, S):
    """float32 runs its own vector math (an inline exp on AVX2 and AVX-512); measured largest
    relative error 1.4e-6 (outputs) and 3.6e-7 (gradients) over these sizes; allowed 5e-5."""
    args = make_args(50, 3, 2, H, cells_per_block=S, gate_feedback=True, scale=1.0)
    single = [a.detach().float().requires_grad_() for a in args]
    options = dict(activation="paper", cells_per_block=S, gate_feedback=True)
    ours = OPS.lstm(*single, **options)
    expected = reference_lstm(*args, **options)
    for actual, reference in zip(ours, expected):
        error = (actual.double() - reference).abs().max() / reference.abs().max()
        assert error < 5e-5
    grads = torch.autograd.grad(sum(o.sum() for o in ours), single[:5])
    expected_grads = torch.autograd.grad(sum(o.sum() for o in expected), args[:5])
    for grad, expected_grad in zip(grads, expected_grads):
        error = (grad.double() - expected_grad).abs().max() / expected_grad.abs().max()
        assert error < 5e-5


@pytest.mark.parametrize("I", [3, 50])  # 50: wide inputs
@pytest.mark.parametrize("truncate", [True, False])
def test_same_bits_for_every_thread_count(truncate, I):
    """Rows go to threads freely in the forward; the backward sums the weight gradients of fixed
    chunks of rows, then the chunks in order: no bit depends on the thread count."""
    args = make_args(30, 23, I, 6, dtype=torch.float32, cells_per_block=2, gate_feedback=True)
    options = dict(truncate=truncate, cells_per_block=2, gate_feedback=True)
    results = []
    threads = torch.get_num_threads()
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            outputs = OPS.lstm(*args, **options)
            grads = torch.autograd.grad(sum(o.sum() for o in outputs), args)
            results.append([t.clone() for t in (*outputs, *grads)])
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


MATRIX_PRODUCTS = {"aten::mm", "aten::addmm", "aten::matmul", "aten::linear", "aten::bmm",
                   "mkldnn::_linear_pointwise", "aten::index_select"}


@pytest.mark.parametrize("I,H,S,gate_feedback", [(2, 4, 2, True), (7, 4, 1, False),
                                                 (1, 3, 1, True), (104, 2, 1, True)])
def test_the_papers_layers_take_it_by_size(I, H, S, gate_feedback):
    """Exp 4's, exp 1's, exp 3's and exp 2c's (p = 100) layers (one sequence at a time): forward
    and backward call no
    matrix product or other ATen op per step, only the buffers' allocations."""
    module = lstm1997.LSTM(I, H, cells_per_block=S, gate_feedback=gate_feedback)
    x = torch.randn(50, 1, I)
    with torch.profiler.profile() as profile:
        module(x)[0].sum().backward()
    names = {event.name for event in profile.events()}
    assert not names & MATRIX_PRODUCTS
    counts = [event.count for event in profile.key_averages() if event.key == "aten::empty"]
    assert counts and counts[0] < 20  # allocations per call, not per step


def test_switch_off_gives_the_other_path(monkeypatch):
    module = lstm1997.LSTM(2, 4, cells_per_block=2, gate_feedback=True)
    x = torch.randn(50, 1, 2)
    monkeypatch.setenv("LSTM1997_TINY_LAYER", "0")
    with torch.profiler.profile() as profile:
        module(x)
    assert {event.name for event in profile.events()} & MATRIX_PRODUCTS


# Wide inputs (kTinyWideInputs = 32 or more): dot products per gate row in the forward, the input
# weights' gradient once per row in the backward.
@pytest.mark.parametrize("I", [32, 33, 41, 104])
@pytest.mark.parametrize("H,S", [(1, 1), (2, 1), (6, 3), (12, 1)])
@pytest.mark.parametrize("B", [1, 2, 7])
@pytest.mark.parametrize("gate_feedback", [False, True])
@pytest.mark.parametrize("truncate", [True, False])
def test_wide_inputs_match_reference(tiny, I, H, S, B, gate_feedback, truncate):
    args = make_args(5, B, I, H, cells_per_block=S, gate_feedback=gate_feedback, state=B != 2,
                     seed=I * 10 + H + B)
    options = dict(truncate=truncate, activation="paper" if I % 2 else "tanh",
                   cells_per_block=S, gate_feedback=gate_feedback)
    ours = OPS.lstm(*args, **options)
    expected = reference_lstm(*args, **options)
    for actual, reference in zip(ours, expected):
        torch.testing.assert_close(actual, reference, rtol=1e-10, atol=1e-10)
    check_gradients(ours, expected, args, seed=2)


def test_exp_2c_layer_at_p_1000_matches_reference():
    """The paper's 2c net at q = p = 1000: 1,004 one-hot inputs, 2 blocks of 1 cell, gate
    feedback, no biases; taken by size."""
    T, I = 40, 1004
    generator = torch.Generator().manual_seed(0)
    x = torch.zeros(T, 1, I, dtype=torch.float64)
    x[torch.arange(T), 0, torch.randint(0, I, (T,), generator=generator)] = 1
    weight_ih = (torch.rand(6, I, generator=generator, dtype=torch.float64) - 0.5) * 0.4
    weight_hh = (torch.rand(6, 6, generator=generator, dtype=torch.float64) - 0.5) * 0.4
    args = [x, weight_ih.requires_grad_(), weight_hh.requires_grad_(), None, None, None, None]
    options = dict(activation="paper", gate_feedback=True)
    ours = OPS.lstm(*args, **options)
    expected = reference_lstm(*args, **options)
    for actual, reference in zip(ours, expected):
        torch.testing.assert_close(actual, reference, rtol=1e-10, atol=1e-10)
    grads = torch.autograd.grad(ours[0][-1].sum(), [weight_ih, weight_hh])
    expected_grads = torch.autograd.grad(expected[0][-1].sum(), [weight_ih, weight_hh])
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("truncate", [True, False])
def test_packed_wide_inputs_match_per_sequence_reference(tiny, truncate):
    torch.manual_seed(3)
    module = lstm1997.LSTM(40, 4, truncate=truncate, activation="paper", cells_per_block=2,
                           gate_feedback=True, dtype=torch.float64)
    sequences = [torch.randn(n, 40, dtype=torch.float64) for n in (7, 3, 5, 1, 7)]
    check_packed_module(module, sequences)


@pytest.mark.parametrize("wide,I", [("1", 3), ("1", 9), ("0", 41)])
@pytest.mark.parametrize("truncate", [True, False])
def test_wide_input_switch_gives_the_same_results(tiny, monkeypatch, wide, I, truncate):
    """LSTM1997_TINY_WIDE_INPUTS=1 takes narrow inputs through the dot products, =0 wide ones
    through the columns' product: both against the reference."""
    monkeypatch.setenv("LSTM1997_TINY_WIDE_INPUTS", wide)
    args = make_args(6, 3, I, 6, cells_per_block=2, gate_feedback=True, seed=I)
    options = dict(truncate=truncate, activation="paper", cells_per_block=2, gate_feedback=True)
    ours = OPS.lstm(*args, **options)
    expected = reference_lstm(*args, **options)
    for actual, reference in zip(ours, expected):
        torch.testing.assert_close(actual, reference, rtol=1e-10, atol=1e-10)
    grads = torch.autograd.grad(sum(o.sum() for o in ours), args[:5])
    expected_grads = torch.autograd.grad(sum(o.sum() for o in expected), args[:5])
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-10)
