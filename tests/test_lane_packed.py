"""Lane-packed rows of the tiny-layer path (csrc/cpu/tiny_layer.cpp: forward_packed,
backward_packed). On AVX-512 builds, float32 layers of H <= 8 cells run up to four rows (batch rows,
or the members of an ensemble) in the lanes of one vector: the forward, and the backward in
truncated mode. LSTM1997_TINY_PACKED=0 turns it off.

The forward gives the one-row loop's results bit for bit; the truncated backward matches the
float64 reference loop (and the one-row loop to float32 rounding: it sums in another order); no bit
depends on the thread count. (On a build without AVX-512 both settings run the one-row loop and
these tests compare it with itself and with the reference.)
"""
import pytest
import torch

import lstm1997

from conftest import make_args
from reference import reference_lstm

OPS = torch.ops.lstm1997

# (H, S, gate_feedback): H = 1 to 8 (four, three or two rows a vector), blocks, gate feedback.
CONFIGS = [(1, 1, True), (3, 1, False), (3, 3, True), (4, 2, True), (5, 1, False), (6, 3, False),
           (8, 4, True)]


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setenv("LSTM1997_TINY_LAYER", "1")


def float32_args(T, B, I, H, S, gate_feedback, seed, bias=True, state=True):
    args = make_args(T, B, I, H, cells_per_block=S, gate_feedback=gate_feedback, seed=seed,
                     scale=1.0, bias=bias, state=state)
    single = [None if a is None else a.detach().float().requires_grad_(i > 0)
              for i, a in enumerate(args)]
    return args, single


def run(args, options, monkeypatch, packed):
    """The op's outputs, and the gradients of everything but the input (so that the truncated
    backward may take the packed rows)."""
    monkeypatch.setenv("LSTM1997_TINY_PACKED", "1" if packed else "0")
    outputs = OPS.lstm(*args, **options)
    weights = torch.linspace(-1, 1, outputs[0].numel()).reshape(outputs[0].shape)
    loss = (outputs[0] * weights.to(outputs[0].dtype)).sum() + outputs[1].square().sum() + \
        outputs[2].sum()
    grads = torch.autograd.grad(loss, [a for a in args[1:] if a is not None])
    return [o.detach() for o in outputs], list(grads)


@pytest.mark.parametrize("H,S,gate_feedback", CONFIGS)
@pytest.mark.parametrize("B", [2, 7, 9, 33])  # 9, 33: the path by size (test at the end)
@pytest.mark.parametrize("activation", ["tanh", "paper"])
def test_forward_same_bits_and_backward_matches_reference(tiny, monkeypatch, H, S,
                                                          gate_feedback, B, activation):
    given = B != 7  # biases, h0 and s0 given, or none of them
    reference_args, args = float32_args(9, B, 3, H, S, gate_feedback, seed=H * 10 + B,
                                        bias=given, state=given)
    options = dict(activation=activation, cells_per_block=S, gate_feedback=gate_feedback)
    outputs, grads = run(args, options, monkeypatch, packed=True)
    one_row_outputs, one_row_grads = run(args, options, monkeypatch, packed=False)
    for packed, one_row in zip(outputs, one_row_outputs):
        assert torch.equal(packed, one_row)
    expected_outputs = reference_lstm(*reference_args, truncate=True, **options)
    weights = torch.linspace(-1, 1, expected_outputs[0].numel(), dtype=torch.float64)
    loss = (expected_outputs[0] * weights.reshape(expected_outputs[0].shape)).sum() + \
        expected_outputs[1].square().sum() + expected_outputs[2].sum()
    expected_grads = torch.autograd.grad(loss, [a for a in reference_args[1:] if a is not None],
                                         allow_unused=True,
                                         materialize_grads=True)  # truncated: h0 gets none
    for grad, expected, one_row in zip(grads, expected_grads, one_row_grads):
        scale = expected.abs().max()  # 0 for h0's gradient (truncated: none)
        assert (grad.double() - expected).abs().max() <= 5e-5 * scale
        assert (grad - one_row).abs().max() <= 5e-5 * scale


@pytest.mark.parametrize("H,S,gate_feedback", CONFIGS)
@pytest.mark.parametrize("B", [3, 9])
def test_input_gradient_matches_reference(tiny, monkeypatch, H, S, gate_feedback, B):
    """The truncated backward with the input's gradient asked for (a layer fed by another)."""
    reference_args, args = float32_args(8, B, 5, H, S, gate_feedback, seed=H + B)
    args[0].requires_grad_()
    options = dict(cells_per_block=S, gate_feedback=gate_feedback)
    grads = {}
    for name, inputs in (("packed", args), ("reference", reference_args)):
        outputs = (OPS.lstm(*inputs, **options) if name == "packed"
                   else reference_lstm(*inputs, truncate=True, **options))
        loss = outputs[0].sin().sum() + outputs[1].square().sum() + outputs[2].sum()
        grads[name] = torch.autograd.grad(loss, inputs, allow_unused=True,
                                          materialize_grads=True)
    for grad, expected in zip(grads["packed"], grads["reference"]):
        assert (grad.double() - expected).abs().max() <= 5e-5 * expected.abs().max()


@pytest.mark.parametrize("H,S,gate_feedback", [(4, 2, True), (5, 1, False)])
def test_packed_sequences(tiny, monkeypatch, H, S, gate_feedback):
    """Rows of different lengths: rows share a vector only with rows of their own length. The
    gradients against the float64 op (the one-row loop, checked against the reference loop in
    test_tiny_layer.py)."""
    reference_args, args = float32_args(7, 5, 2, H, S, gate_feedback, seed=3)
    lengths = [7, 7, 5, 3, 3]
    batch_sizes = torch.tensor([sum(n > t for n in lengths) for t in range(7)])
    mask = torch.tensor([[t < n for n in lengths] for t in range(7)])

    def packed_input(x):
        return x[mask]  # step-major rows, as a PackedSequence's data

    options = dict(cells_per_block=S, gate_feedback=gate_feedback, batch_sizes=batch_sizes)
    results = []
    for inputs, packed in ((args, True), (args, False), (reference_args, False)):
        monkeypatch.setenv("LSTM1997_TINY_PACKED", "1" if packed else "0")
        outputs = OPS.lstm(packed_input(inputs[0]), *inputs[1:], **options)
        loss = outputs[0].sin().sum() + outputs[1].square().sum() + outputs[2].sum()
        results.append(([o.detach() for o in outputs],
                        torch.autograd.grad(loss, inputs[1:])))
    (outputs, grads), (one_row_outputs, one_row_grads), (_, expected_grads) = results
    for packed, one_row in zip(outputs, one_row_outputs):
        assert torch.equal(packed, one_row)
    for grad, expected in zip(grads, expected_grads):
        assert (grad.double() - expected).abs().max() <= 5e-5 * expected.abs().max()


def ensemble(E, B, H, S, gate_feedback, seed):
    members = [make_args(11, B, 2, H, cells_per_block=S, gate_feedback=gate_feedback,
                         seed=seed + e, requires_grad=False, scale=1.0) for e in range(E)]
    return [torch.stack([m[i] for m in members]).float() for i in range(7)]


def ensemble_results(tensors, S, gate_feedback):
    options = dict(activation="tanh", batch_sizes=None, cells_per_block=S,
                   gate_feedback=gate_feedback)
    output, h_n, s_n, squashed, gates = OPS._lstm_ensemble_forward(*tensors, **options)
    grad_output = torch.cos(output)
    gradients = OPS._lstm_ensemble_backward(
        grad_output, h_n, s_n, tensors[0], tensors[1], tensors[2], tensors[5], output, squashed,
        gates, truncate=True, activation="tanh", batch_sizes=None,
        output_mask=[False, True, True, True], cells_per_block=S, gate_feedback=gate_feedback)
    return [output, h_n, s_n] + [g for g in gradients if g is not None]


@pytest.mark.parametrize("E,B", [(7, 1), (3, 3), (1, 2)])
@pytest.mark.parametrize("H,S,gate_feedback", [(4, 1, False), (4, 2, True), (7, 1, True)])
def test_ensemble_members_share_vectors(monkeypatch, E, B, H, S, gate_feedback):
    """One row per member (an ensemble of single sequences): members share vectors, each with its
    own weights in its lanes. Against the one-row loops: the forward bit for bit, the gradients to
    float32 rounding (the one-row truncated backward sums a block of steps in registers before
    adding it, the packed one adds every step)."""
    tensors = ensemble(E, B, H, S, gate_feedback, seed=E * 10 + H)
    monkeypatch.setenv("LSTM1997_TINY_PACKED", "1")
    packed = ensemble_results(tensors, S, gate_feedback)
    monkeypatch.setenv("LSTM1997_TINY_PACKED", "0")
    one_row = ensemble_results(tensors, S, gate_feedback)
    for a, b in zip(packed[:3], one_row[:3]):
        assert torch.equal(a, b)
    for a, b in zip(packed[3:], one_row[3:]):
        assert (a - b).abs().max() <= 1e-5 * b.abs().max()


def test_ensemble_of_packed_sequences(monkeypatch):
    """Members of several rows of different lengths (batch_sizes shared): rows share vectors
    with rows of their own length; against the one-row loop. Truncated: no error reaches h0."""
    E, H, lengths = 3, 4, [6, 6, 6, 6, 4, 2]
    batch_sizes = torch.tensor([sum(n > t for n in lengths) for t in range(6)])
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(E, int(batch_sizes.sum()), 2, generator=generator)
    w_ih, w_hh = torch.randn(E, 12, 2, generator=generator), torch.randn(E, 12, H, generator=generator)
    bias, h0 = torch.randn(E, 12, generator=generator), torch.randn(E, 6, H, generator=generator)
    s0 = torch.randn(E, 6, H, generator=generator)

    def results():
        output, h_n, s_n, squashed, gates = OPS._lstm_ensemble_forward(
            x, w_ih, w_hh, bias, None, h0, s0, activation="tanh", batch_sizes=batch_sizes,
            cells_per_block=1, gate_feedback=False)
        gradients = OPS._lstm_ensemble_backward(
            torch.cos(output), h_n, s_n, x, w_ih, w_hh, h0, output, squashed, gates,
            truncate=True, activation="tanh", batch_sizes=batch_sizes,
            output_mask=[False, True, True, True], cells_per_block=1, gate_feedback=False)
        return [output, h_n, s_n], [g for g in gradients if g is not None]

    monkeypatch.setenv("LSTM1997_TINY_PACKED", "1")
    outputs, grads = results()
    monkeypatch.setenv("LSTM1997_TINY_PACKED", "0")
    one_row_outputs, one_row_grads = results()
    for a, b in zip(outputs, one_row_outputs):
        assert torch.equal(a, b)
    for a, b in zip(grads, one_row_grads):
        assert (a - b).abs().max() <= 1e-5 * b.abs().max()
    assert torch.equal(grads[-2], torch.zeros_like(h0))  # grad_h0


@pytest.mark.parametrize("shape", ["batch", "ensemble", "full vectors"])
def test_same_bits_for_every_thread_count(tiny, monkeypatch, shape):
    monkeypatch.setenv("LSTM1997_TINY_PACKED", "1")
    results = []
    threads = torch.get_num_threads()
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            if shape == "batch":
                _, args = float32_args(13, 23, 3, 6, 3, True, seed=5)
                outputs, grads = run(args, dict(cells_per_block=3, gate_feedback=True),
                                     monkeypatch, packed=True)
                results.append(outputs + grads)
            elif shape == "full vectors":  # H = 4: four rows a vector, chunks of four rows
                _, args = float32_args(13, 23, 3, 4, 1, False, seed=6)
                outputs, grads = run(args, {}, monkeypatch, packed=True)
                results.append(outputs + grads)
            else:
                results.append(ensemble_results(ensemble(9, 1, 4, 2, True, seed=1), 2, True))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)



def packing_active(monkeypatch):
    """Whether this build packs rows (AVX-512): the packed backward sums two rows' weight
    gradients in another order than the one-row loop, so some bit of them differs."""
    tensors = ensemble(1, 2, 4, 1, False, seed=11)
    monkeypatch.setenv("LSTM1997_TINY_PACKED", "1")
    packed = ensemble_results(tensors, 1, False)
    monkeypatch.setenv("LSTM1997_TINY_PACKED", "0")
    one_row = ensemble_results(tensors, 1, False)
    monkeypatch.delenv("LSTM1997_TINY_PACKED")
    return not all(torch.equal(a, b) for a, b in zip(packed, one_row))


@pytest.mark.parametrize("B", [8, 32, 130])
@pytest.mark.parametrize("H", [2, 8])
def test_small_float32_layers_take_packed_rows_at_any_batch_size(monkeypatch, B, H):
    """By size, float32 layers of H <= 8 cells take the tiny-layer path at every batch size where
    rows are packed (benchmarks/bench.py --small-batches: faster than the small-layer loop there);
    LSTM1997_SMALL_LAYER=1 still gives the small-layer loop, and float64 (not packed) keeps it from
    8 rows on. Which path ran shows in the bits: each path sums its products in its own order."""
    for switch in ("LSTM1997_TINY_LAYER", "LSTM1997_SMALL_LAYER", "LSTM1997_TINY_PACKED"):
        monkeypatch.delenv(switch, raising=False)

    def output(dtype, **switches):
        for name, value in switches.items():
            monkeypatch.setenv(name, value)
        torch.manual_seed(0)
        module = lstm1997.LSTM(3, H).to(dtype)
        result = module(torch.randn(20, B, 3, dtype=dtype))[0].detach()
        for name in switches:
            monkeypatch.delenv(name)
        return result

    for dtype in (torch.float32, torch.float64):
        by_size = output(dtype)
        tiny = output(dtype, LSTM1997_TINY_LAYER="1")
        loop = output(dtype, LSTM1997_TINY_LAYER="0")
        assert not torch.equal(tiny, loop)  # the two paths are told apart by their bits
        packed = dtype == torch.float32 and packing_active(monkeypatch)
        assert torch.equal(by_size, tiny if packed else loop)
    assert torch.equal(output(torch.float32, LSTM1997_SMALL_LAYER="1"),
                       output(torch.float32, LSTM1997_TINY_LAYER="0"))
