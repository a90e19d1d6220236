"""The layer op against independent references: torch.nn.LSTM with its forget gate pinned open, and
a plain PyTorch loop (reference.py)."""
import pytest
import torch
from conftest import make_args
from reference import drop_forget_rows, pinned_torch_lstm, reference_lstm

import lstm1997

# Every test runs on the CPU kernels and on the device-generic implementation (conftest.py).
pytestmark = pytest.mark.usefixtures("implementation")

SHAPES = [  # (T, B, I, H)
    (1, 1, 1, 1),
    (1, 3, 4, 5),
    (7, 1, 3, 3),
    (5, 4, 6, 2),
    (12, 3, 8, 16),
    (20, 5, 2, 33),
]
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}
ACTIVATIONS = ["tanh", "paper"]


def assert_close(actual, expected, tol, name=""):
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    err = (actual - expected).abs().max().item() if actual.numel() else 0.0
    assert err <= tol, f"{name}: max abs error {err:.3g} > {tol:.1g}"


def random_upstream(outputs, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.dtype) for o in outputs]


def weighted_sum(outputs, weights):
    return sum((o * w).sum() for o, w in zip(outputs, weights))


def grads(loss, tensors):
    present = [t for t in tensors if t is not None]
    got = iter(torch.autograd.grad(loss, present, allow_unused=True))
    return [next(got) if t is not None else None for t in tensors]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("bias,state", [(True, True), (False, False), (True, False)])
def test_forward_equals_pinned_nn_lstm(shape, dtype, bias, state):
    x, w_ih, w_hh, b_ih, b_hh, h0, s0 = make_args(*shape, dtype=dtype, bias=bias, state=state,
                                                 requires_grad=False)
    output, h_n, s_n = lstm1997.lstm(x, w_ih, w_hh, b_ih, b_hh, h0, s0)
    torch_lstm = pinned_torch_lstm(w_ih, w_hh, b_ih, b_hh)
    hx = (h0.unsqueeze(0), s0.unsqueeze(0)) if state else None
    expected, (expected_h, expected_c) = torch_lstm(x, hx)
    tol = TOLERANCE[dtype]
    assert_close(output, expected, tol, "output")
    assert_close(h_n, expected_h[0], tol, "h_n")
    assert_close(s_n, expected_c[0], tol, "s_n")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_forward_equals_reference_loop(shape, activation):
    args = make_args(*shape, requires_grad=False)
    actual = lstm1997.lstm(*args, activation=activation)
    expected = reference_lstm(*args, activation=activation)
    for name, a, e in zip(("output", "h_n", "s_n"), actual, expected):
        assert_close(a, e, 1e-12, name)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("bias,state", [(True, True), (False, False)])
def test_exact_gradients_equal_pinned_nn_lstm(shape, bias, state):
    args = make_args(*shape, bias=bias, state=state)
    x, w_ih, w_hh, b_ih, b_hh, h0, s0 = args
    outputs = lstm1997.lstm(*args, truncate=False)
    upstream = random_upstream(outputs)
    ours = grads(weighted_sum(outputs, upstream), args)

    torch_lstm = pinned_torch_lstm(w_ih, w_hh, b_ih, b_hh)
    x_ref = x.detach().clone().requires_grad_()
    hx = None
    if state:
        hx = (h0.detach().unsqueeze(0).requires_grad_(), s0.detach().unsqueeze(0).requires_grad_())
    out_ref, (h_ref, c_ref) = torch_lstm(x_ref, hx)
    weighted_sum((out_ref, h_ref[0], c_ref[0]), upstream).backward()

    assert_close(ours[0], x_ref.grad, 1e-10, "input")
    assert_close(ours[1], drop_forget_rows(torch_lstm.weight_ih_l0.grad), 1e-10, "weight_ih")
    assert_close(ours[2], drop_forget_rows(torch_lstm.weight_hh_l0.grad), 1e-10, "weight_hh")
    if bias:
        assert_close(ours[3], drop_forget_rows(torch_lstm.bias_ih_l0.grad), 1e-10, "bias_ih")
        assert_close(ours[4], drop_forget_rows(torch_lstm.bias_hh_l0.grad), 1e-10, "bias_hh")
    if state:
        assert_close(ours[5], hx[0].grad[0], 1e-10, "h0")
        assert_close(ours[6], hx[1].grad[0], 1e-10, "s0")


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", [(1, 2, 3, 2), (4, 3, 2, 3), (6, 1, 1, 4)])
@pytest.mark.parametrize("bias,state", [(True, True), (False, False)])
def test_gradcheck_exact(activation, shape, bias, state):
    args = make_args(*shape, bias=bias, state=state)

    def fn(*a):
        return lstm1997.lstm(*a, truncate=False, activation=activation)

    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("bias,state", [(True, True), (False, False)])
def test_truncated_gradients_equal_detached_reference(shape, activation, bias, state):
    args = make_args(*shape, bias=bias, state=state)
    outputs = lstm1997.lstm(*args, truncate=True, activation=activation)
    upstream = random_upstream(outputs)
    ours = grads(weighted_sum(outputs, upstream), args)
    expected = grads(
        weighted_sum(reference_lstm(*args, truncate=True, activation=activation), upstream), args
    )
    names = ["input", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "h0", "s0"]
    for name, arg, a, e in zip(names, args, ours, expected):
        if arg is None:
            continue
        if e is None:  # h0 reaches the reference only through the detached product
            e = torch.zeros_like(arg)
        assert_close(a, e, 1e-10, name)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_truncated_gradients_differ_from_exact(activation):
    args = make_args(10, 3, 4, 5, scale=1.0)
    loss = lambda truncate: lstm1997.lstm(*args, truncate=truncate, activation=activation)[0].sum()
    truncated = grads(loss(True), args)
    exact = grads(loss(False), args)
    # The recurrent weights, the input and h0 all lose the error that flowed through h_{t-1}.
    for index, name in [(0, "input"), (2, "weight_hh"), (5, "h0")]:
        diff = (truncated[index] - exact[index]).abs().max().item()
        assert diff > 1e-3, f"{name}: truncated and exact gradients agree ({diff:.3g})"


def test_activations_differ():
    args = make_args(5, 2, 3, 4, requires_grad=False, scale=1.0)
    tanh_out = lstm1997.lstm(*args, activation="tanh")[0]
    paper_out = lstm1997.lstm(*args, activation="paper")[0]
    assert (tanh_out - paper_out).abs().max() > 1e-2


def test_paper_squashers_ranges():
    """g spans [-2, 2] and h [-1, 1] under the paper's activation: drive a cell into saturation."""
    H = 1
    x = torch.ones(30, 1, 1, dtype=torch.float64)
    w_ih = torch.tensor([[50.0], [50.0], [50.0]], dtype=torch.float64)  # gates open, z large
    w_hh = torch.zeros(3 * H, H, dtype=torch.float64)
    output, h_n, s_n = lstm1997.lstm(x, w_ih, w_hh, activation="paper")
    # s grows by g(z) = 2 per step; h(s) -> 1, and the output gate is open.
    assert torch.allclose(s_n, torch.tensor([[60.0]], dtype=torch.float64))
    assert torch.allclose(h_n, torch.tensor([[1.0]], dtype=torch.float64))


@pytest.mark.parametrize("truncate", [True, False])
def test_noncontiguous_and_expanded_inputs(truncate):
    args = make_args(6, 3, 4, 5, requires_grad=False)
    x, w_ih, w_hh, b_ih, b_hh, h0, s0 = args
    x_strided = x.transpose(0, 1).contiguous().transpose(0, 1)  # same values, batch-major strides
    w_ih_t = w_ih.t().contiguous().t()
    h0_expanded = h0[:1].expand(3, 5)
    inputs = [t.clone().requires_grad_() for t in (x_strided, w_ih_t, w_hh, b_ih, b_hh, h0_expanded, s0)]
    assert not inputs[0].is_contiguous()
    outputs = lstm1997.lstm(*inputs, truncate=truncate)
    outputs[0].sum().backward()  # the upstream gradient is an expanded (stride 0) tensor
    dense = [t.detach().contiguous().requires_grad_() for t in inputs]
    expected = reference_lstm(*dense, truncate=truncate)
    expected[0].sum().backward()
    for a, e in zip(outputs, expected):
        assert_close(a, e, 1e-12)
    for a, e in zip(inputs, dense):
        assert_close(a.grad, e.grad if e.grad is not None else torch.zeros_like(e), 1e-10)


@pytest.mark.parametrize("truncate", [True, False])
def test_empty_sequence_returns_initial_state(truncate):
    args = make_args(0, 3, 4, 5)
    output, h_n, s_n = lstm1997.lstm(*args, truncate=truncate)
    assert output.shape == (0, 3, 5)
    assert torch.equal(h_n, args[5]) and torch.equal(s_n, args[6])
    (h_n.sum() + 2 * s_n.sum()).backward()
    assert torch.equal(args[5].grad, torch.ones(3, 5, dtype=torch.float64))
    assert torch.equal(args[6].grad, torch.full((3, 5), 2.0, dtype=torch.float64))
    assert torch.equal(args[2].grad, torch.zeros_like(args[2]))


def test_inference_mode_and_no_grad():
    args = make_args(5, 2, 3, 4, requires_grad=True)
    expected = reference_lstm(*args)
    with torch.inference_mode():
        out_inf = lstm1997.lstm(*args)
    with torch.no_grad():
        out_nograd = lstm1997.lstm(*args)
    for a, b, e in zip(out_inf, out_nograd, expected):
        assert not a.requires_grad and not b.requires_grad
        assert_close(a, e, 1e-12)
        assert_close(b, e, 1e-12)


def test_bias_gradients_do_not_share_storage():
    args = make_args(4, 2, 3, 4)
    lstm1997.lstm(*args)[0].sum().backward()
    assert args[3].grad.data_ptr() != args[4].grad.data_ptr()
    assert torch.equal(args[3].grad, args[4].grad)


@pytest.mark.parametrize("truncate", [True, False])
@pytest.mark.parametrize("needs_grad", [(0,), (1, 2), (3,), (4,), (0, 6), (2, 4, 5)])
def test_gradients_when_only_some_inputs_require_them(truncate, needs_grad):
    """The backward skips what no input needs; what is needed stays right."""
    args = make_args(6, 3, 4, 5, requires_grad=False)
    args = tuple(a.clone().requires_grad_(k in needs_grad) for k, a in enumerate(args))
    outputs = lstm1997.lstm(*args, truncate=truncate)
    upstream = random_upstream(outputs)
    wanted = [args[k] for k in needs_grad]
    ours = torch.autograd.grad(weighted_sum(outputs, upstream), wanted)
    expected = torch.autograd.grad(
        weighted_sum(reference_lstm(*args, truncate=truncate), upstream), wanted, allow_unused=True
    )
    for a, e, arg in zip(ours, expected, wanted):
        assert_close(a, e if e is not None else torch.zeros_like(arg), 1e-10)


@pytest.mark.parametrize("packed", [False, True])
def test_inference_over_several_projection_blocks(packed):
    """Without autograd the input projection runs in blocks of steps (here about 10,900 steps per
    block at B=2, H=4): a sequence spanning two blocks matches the reference loop."""
    T, B = 11500, 2
    x, w_ih, w_hh, b_ih, b_hh, h0, s0 = make_args(T, B, 1, 4, requires_grad=False, scale=0.3)
    if packed:
        lengths = torch.tensor([T, 300])
        data = torch.nn.utils.rnn.pack_padded_sequence(x, lengths)
        with torch.no_grad():
            output, h_n, s_n = lstm1997.lstm(data.data, w_ih, w_hh, b_ih, b_hh, h0, s0,
                                             batch_sizes=data.batch_sizes)
        # Sequence 1 stops at step 300; sequence 0 runs on alone.
        short = reference_lstm(x[:300, 1:], w_ih, w_hh, b_ih, b_hh, h0[1:], s0[1:])
        long = reference_lstm(x[:, :1], w_ih, w_hh, b_ih, b_hh, h0[:1], s0[:1])
        assert_close(h_n, torch.cat([long[1], short[1]]), 1e-10, "h_n")
        assert_close(s_n, torch.cat([long[2], short[2]]), 1e-9, "s_n")
        assert_close(output[-1000:], long[0][-1000:, 0], 1e-10, "output")
    else:
        with torch.no_grad():
            output, h_n, s_n = lstm1997.lstm(x, w_ih, w_hh, b_ih, b_hh, h0, s0)
        expected = reference_lstm(x, w_ih, w_hh, b_ih, b_hh, h0, s0)
        for name, a, e in zip(("output", "h_n", "s_n"), (output, h_n, s_n), expected):
            assert_close(a, e, 1e-9, name)
