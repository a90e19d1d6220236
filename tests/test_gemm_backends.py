"""The three ways the CPU kernels run their matrix products: ATen's BLAS call, PyTorch's oneDNN
(mkldnn::_linear_pointwise), and, for the recurrent product of small layers, the fused small-layer
loop (small_gemm.h), which from 8 batch rows on also does the input product step by step. LSTM1997_ONEDNN=0/1 sends every product to BLAS / every float32 product to
oneDNN; LSTM1997_SMALL_LAYER=0/1 turns the small-layer loop off / on; unset, the size decides
(read at every use, so a test can switch).

Each path's float32 results are checked against the float64 reference loop. (float64 runs on BLAS
and the small-layer loop; the whole test suite checks it at 1e-10, by size, and the small-layer
loop alone below.) Tolerance: float32 rounding over a few steps and sums of 128-256
products; measured largest relative error about 3e-6 (forward) and 1.5e-6 (gradients), either
library; allowed 5e-5.
"""
import pytest
import torch

import lstm1997
from conftest import check_packed_module, make_args
from reference import reference_lstm

HAS_ONEDNN = torch.backends.mkldnn.is_available()
# The switches of each path: (LSTM1997_ONEDNN, LSTM1997_SMALL_LAYER).
PATHS = {"BLAS": ("0", "0"), "oneDNN": ("1", "0"), "small layer": ("0", "1"), "by size": ("", "")}


def use_path(monkeypatch, path):
    onednn, small_layer = PATHS[path]
    monkeypatch.setenv("LSTM1997_ONEDNN", onednn)
    monkeypatch.setenv("LSTM1997_SMALL_LAYER", small_layer)

# Big enough that, by size, the products go to oneDNN: 64 x 256 x 768 multiply-adds per step.
T, B, I, H = 5, 64, 128, 256
# (T, B) of the first test: weight gradients summed over T * B = 320 rows, and over 96 (a
# reduction short enough that oneDNN takes it as a^T b, matmul.cpp).
STEPS_AND_BATCHES = [(T, B), (2, 48)]


def relative_error(actual, expected):
    return ((actual.double() - expected).abs().max() / expected.abs().max().clamp_min(1e-30)).item()


def float32_copies(args):
    return [None if a is None else a.detach().float().requires_grad_() for a in args]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("truncate", [True, False])
@pytest.mark.parametrize("cells_per_block", [1, 2])
@pytest.mark.parametrize("steps,batch", STEPS_AND_BATCHES)
def test_float32_op_matches_the_float64_reference(monkeypatch, path, truncate, cells_per_block,
                                                  steps, batch):
    use_path(monkeypatch, path)
    args = make_args(steps, batch, I, H, cells_per_block=cells_per_block)
    ours = float32_copies(args)
    output, h_n, s_n = torch.ops.lstm1997.lstm(*ours, truncate=truncate, cells_per_block=cells_per_block)
    expected, expected_h, expected_s = reference_lstm(*args, truncate=truncate)
    for actual, reference in [(output, expected), (h_n, expected_h), (s_n, expected_s)]:
        assert relative_error(actual, reference) < 5e-5
    weights = torch.randn(steps, batch, H, dtype=torch.float64)
    grads = torch.autograd.grad((output * weights.float()).sum() + h_n.sum() + s_n.sum(), ours,
                                allow_unused=True)
    expected_grads = torch.autograd.grad(
        (expected * weights).sum() + expected_h.sum() + expected_s.sum(), args, allow_unused=True)
    for grad, expected_grad in zip(grads, expected_grads):
        if expected_grad is None:  # h0 under truncation: it reaches nothing
            assert grad is None or not grad.any()
        else:
            assert relative_error(grad, expected_grad) < 5e-5


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("steps,batch", STEPS_AND_BATCHES)
def test_h0_of_any_layout_gives_the_same_bits(monkeypatch, path, steps, batch):
    """An initial state shared by the batch (expanded: stride 0) gives the weight gradients that
    the same values laid out densely give, bit for bit, on every path (the products over its rows
    take the dense copy: oneDNN rounded a stride-0 operand differently)."""
    use_path(monkeypatch, path)
    args = float32_copies(make_args(steps, batch, I, H))
    h0 = torch.randn(1, H).expand(batch, H)
    grads = []
    for initial in (h0, h0.contiguous()):
        output, _, _ = torch.ops.lstm1997.lstm(args[0], *args[1:5], initial, args[6],
                                               truncate=True)
        grads.append(torch.autograd.grad(output.sum(), args[1:3]))
    for expanded, dense in zip(*grads):
        assert torch.equal(expanded, dense)


@pytest.mark.parametrize("path", PATHS)
def test_float32_inference_in_several_blocks_matches_the_reference(monkeypatch, path):
    # Without autograd the library paths project the input block by block (about 2^18 gate values
    # a block): 100 steps of 32 x 192 gate values make three blocks, the last one shorter. (The
    # small-layer loop folds the input product into its steps at this batch.) Over 100 steps the
    # untrained carousel drifts to |s| ~ 170, where float32 spacing is 1.5e-5: the rounding of the
    # running sum reaches the outputs (measured up to 5.4e-5 relative): allowed 2e-4 here.
    use_path(monkeypatch, path)
    args = make_args(100, 32, 48, 64, requires_grad=False)
    with torch.no_grad():
        output, h_n, s_n = torch.ops.lstm1997.lstm(*float32_copies(args), activation="paper")
    expected, expected_h, expected_s = reference_lstm(*args, activation="paper")
    for actual, reference in [(output, expected), (h_n, expected_h), (s_n, expected_s)]:
        assert relative_error(actual, reference) < 2e-4


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("truncate", [True, False])
def test_float32_packed_module_matches_float64(monkeypatch, path, truncate):
    # Packed steps have fewer rows than the batch the oneDNN weight was packed for.
    use_path(monkeypatch, path)
    torch.manual_seed(0)
    module = lstm1997.LSTM(40, 128, num_layers=2, truncate=truncate)
    reference = lstm1997.LSTM(40, 128, num_layers=2, truncate=truncate).double()
    reference.load_state_dict(module.state_dict())
    sequences = [torch.randn(n, 40) for n in (9, 3, 7, 9, 1, 5) * 8]
    results = []
    for net, dtype in [(module, torch.float32), (reference, torch.float64)]:
        packed = torch.nn.utils.rnn.pack_sequence([s.to(dtype) for s in sequences],
                                                  enforce_sorted=False)
        output, (h_n, s_n) = net(packed)
        loss = output.data.square().sum() + h_n.sum() + s_n.sum()
        results.append([output.data, h_n, s_n, *torch.autograd.grad(loss, list(net.parameters()))])
    for actual, expected in zip(*results):
        assert relative_error(actual, expected) < 5e-5


def check_gradients(ours, outputs, args, expected_outputs, tol):
    """The gradients of one random loss on (output, h_n, s_n) with respect to every argument, ours
    against the reference's."""
    output, h_n, s_n = outputs
    expected, expected_h, expected_s = expected_outputs
    weights = torch.randn(expected.shape, dtype=torch.float64)
    grads = torch.autograd.grad((output * weights.to(output.dtype)).sum() + h_n.sum() + s_n.sum(),
                                ours)
    expected_grads = torch.autograd.grad(
        (expected * weights).sum() + expected_h.sum() + expected_s.sum(), args)
    for grad, expected_grad in zip(grads, expected_grads):
        assert relative_error(grad, expected_grad) < tol


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(4, 1, 3, 5), (5, 7, 9, 37), (3, 5, 16, 64), (4, 13, 8, 100)])
def test_small_layer_loop_at_odd_sizes(monkeypatch, dtype, shape):
    # Hidden sizes that are not whole SIMD vectors and batches that are not whole row tiles.
    monkeypatch.setenv("LSTM1997_SMALL_LAYER", "1")
    args = make_args(*shape)
    ours = [a.detach().to(dtype).requires_grad_() for a in args]
    output, h_n, s_n = torch.ops.lstm1997.lstm(*ours, truncate=False)
    expected, expected_h, expected_s = reference_lstm(*args, truncate=False)
    tol = 1e-12 if dtype == torch.float64 else 5e-6
    for actual, reference in [(output, expected), (h_n, expected_h), (s_n, expected_s)]:
        assert relative_error(actual, reference) < tol
    with torch.no_grad():
        inference, _, _ = torch.ops.lstm1997.lstm(*ours, truncate=False)
    assert relative_error(inference, expected) < tol
    # Exact BPTT: the small-layer loop also runs the backward's per-step product.
    check_gradients(ours, (output, h_n, s_n), args, (expected, expected_h, expected_s), 4 * tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("biases", ["both", "input only", "recurrent only", "none"])
@pytest.mark.parametrize("threads", [1, 3])
def test_small_layer_loop_with_the_input_product_folded_in(monkeypatch, dtype, biases, threads):
    # From a register tile of batch rows (8) on, the small-layer loop also computes the input
    # product, step by step, and adds the biases itself. 9 rows: a full tile and a tail; 3 threads
    # split them by cells (too few rows each), 1 thread takes them all. The input is a
    # non-contiguous view, as a batch-first input transposed is.
    monkeypatch.setenv("LSTM1997_SMALL_LAYER", "1")
    args = list(make_args(4, 9, 11, 37))
    if biases in ("recurrent only", "none"):
        args[3] = None
    if biases in ("input only", "none"):
        args[4] = None
    ours = [None if a is None else a.detach().to(dtype).requires_grad_() for a in args]
    ours[0] = ours[0].detach().transpose(0, 1).contiguous().transpose(0, 1).requires_grad_()
    assert not ours[0].is_contiguous()
    tol = 1e-12 if dtype == torch.float64 else 5e-6
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for truncate in (True, False):
            output, h_n, s_n = torch.ops.lstm1997.lstm(*ours, truncate=truncate, activation="paper")
            expected, expected_h, expected_s = reference_lstm(*args, truncate=truncate,
                                                              activation="paper")
            with torch.no_grad():
                inference = torch.ops.lstm1997.lstm(*ours, truncate=truncate, activation="paper")
            for actual, reference in [(output, expected), (h_n, expected_h), (s_n, expected_s),
                                      *zip(inference, (expected, expected_h, expected_s))]:
                assert relative_error(actual, reference) < tol
            present = [a for a in ours if a is not None]
            weights = torch.randn(expected.shape, dtype=torch.float64)
            grads = torch.autograd.grad(
                (output * weights.to(dtype)).sum() + h_n.sum() + s_n.sum(), present,
                allow_unused=True)
            expected_grads = torch.autograd.grad(
                (expected * weights).sum() + expected_h.sum() + expected_s.sum(),
                [a for a in args if a is not None], allow_unused=True)
            for grad, expected_grad in zip(grads, expected_grads):
                if expected_grad is None:  # h0 under truncation: it reaches nothing
                    assert grad is None or not grad.any()
                else:
                    assert relative_error(grad, expected_grad) < 4 * tol
    finally:
        torch.set_num_threads(previous_threads)


@pytest.mark.parametrize("truncate", [True, False])
@pytest.mark.parametrize("lengths", [(5, 3, 4), (9, 3, 7, 9, 1, 5) * 4])
def test_small_layer_loop_packed_float64(monkeypatch, truncate, lengths):
    # 3 sequences: the loop splits the cells between threads (too few rows to split them); 24: the
    # batch rows. Packed steps have fewer active rows than the batch.
    monkeypatch.setenv("LSTM1997_SMALL_LAYER", "1")
    torch.manual_seed(0)
    module = lstm1997.LSTM(6, 40, num_layers=2, bidirectional=True, truncate=truncate).double()
    check_packed_module(module, [torch.randn(n, 6, dtype=torch.float64) for n in lengths])


def libraries_used(run):
    """Which of the two libraries' ops ran: names of the profiled matrix-product ops."""
    with torch.profiler.profile() as profile:
        run()
    names = {event.name for event in profile.events()}
    return {"oneDNN" for name in names if name.startswith("mkldnn::_linear_pointwise")} | {
        "BLAS" for name in names if name in ("aten::addmm", "aten::mm", "aten::addmm_")}


def train_and_infer():
    module = lstm1997.LSTM(I, H)
    x = torch.randn(T, B, I, requires_grad=True)
    module(x)[0].sum().backward()
    with torch.no_grad():
        module(x)


@pytest.mark.skipif(not HAS_ONEDNN, reason="this torch has no oneDNN")
def test_the_switch_picks_the_library(monkeypatch):
    monkeypatch.setenv("LSTM1997_ONEDNN", "1")
    assert libraries_used(train_and_infer) == {"oneDNN"}
    monkeypatch.setenv("LSTM1997_ONEDNN", "")
    assert libraries_used(train_and_infer) == {"oneDNN"}  # big enough
    monkeypatch.setenv("LSTM1997_ONEDNN", "0")
    assert "oneDNN" not in libraries_used(train_and_infer)


@pytest.mark.skipif(not HAS_ONEDNN, reason="this torch has no oneDNN")
def test_small_products_and_other_dtypes_stay_with_blas(monkeypatch):
    monkeypatch.setenv("LSTM1997_ONEDNN", "")
    small = lstm1997.LSTM(8, 16)
    assert "oneDNN" not in libraries_used(lambda: small(torch.randn(5, 2, 8))[0].sum().backward())
    monkeypatch.setenv("LSTM1997_ONEDNN", "1")
    double = lstm1997.LSTM(I, H).double()
    assert "oneDNN" not in libraries_used(
        lambda: double(torch.randn(T, B, I, dtype=torch.float64))[0].sum().backward())


@pytest.mark.skipif(not HAS_ONEDNN, reason="this torch has no oneDNN")
def test_deterministic_algorithms_keep_every_product_on_blas(monkeypatch):
    # oneDNN's results may depend on the thread count; the deterministic mode promises they don't.
    monkeypatch.setenv("LSTM1997_ONEDNN", "1")
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        assert "oneDNN" not in libraries_used(train_and_infer)
    finally:
        torch.use_deterministic_algorithms(previous)


def in_layout(tensor, layout):
    """The same values as `tensor`, stored another way: as a column-major copy, or as every other
    column of a wider tensor."""
    if layout == "column-major":
        view = tensor.detach().t().contiguous().t()
    elif layout == "strided":
        wide = torch.zeros(tensor.shape[0], 2 * tensor.shape[1], dtype=tensor.dtype)
        wide[:, ::2] = tensor.detach()
        view = wide[:, ::2]
    else:
        view = tensor.detach().clone()
    return view.requires_grad_()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layout", ["contiguous", "column-major", "strided"])
@pytest.mark.parametrize("T, B", [(1, 1), (1, 9), (3, 2), (3, 9)])
@pytest.mark.parametrize("gate_feedback", [False, True])
def test_small_layer_loop_with_weights_in_any_layout(monkeypatch, dtype, layout, T, B,
                                                     gate_feedback):
    # The loop packs W_ih and W_hh into panels at every call, from whatever layout they have; a
    # call of one step (LSTMCell, online learning) is the case where packing is most of the call.
    # H = 37: a partial panel. 9 rows: the input product folded into the steps. Exact mode: the
    # backward's per-step products run on panels of W_hh's column slices.
    monkeypatch.setenv("LSTM1997_SMALL_LAYER", "1")
    args = make_args(T, B, 5, 37, gate_feedback=gate_feedback)
    ours = [a.detach().to(dtype).requires_grad_() for a in args]
    ours[1], ours[2] = in_layout(ours[1], layout), in_layout(ours[2], layout)
    assert layout == "contiguous" or not ours[1].is_contiguous()
    output, h_n, s_n = torch.ops.lstm1997.lstm(*ours, truncate=False, activation="paper",
                                               gate_feedback=gate_feedback)
    expected, expected_h, expected_s = reference_lstm(*args, truncate=False, activation="paper",
                                                      gate_feedback=gate_feedback,
                                                      cells_per_block=1)
    tol = 1e-12 if dtype == torch.float64 else 5e-6
    for actual, reference in [(output, expected), (h_n, expected_h), (s_n, expected_s)]:
        assert relative_error(actual, reference) < tol
    check_gradients(ours, (output, h_n, s_n), args, (expected, expected_h, expected_s), 4 * tol)
