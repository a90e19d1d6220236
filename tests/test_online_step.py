"""OnlineLSTM's one-step path (_lstm_online_forward_ and _lstm_online_update_: state, buffers and
traces in place, the gradient applied in the pass over the traces): a stream of one-step calls must
give the outputs of the plain-PyTorch reference loop and, summed, the gradient of its detached
(truncated) backward, for every configuration and step shape; `update` must be the plain gradient
step of the chunk ops' gradient; bad arguments must be refused by name."""
import itertools

import pytest
import torch
from reference import reference_lstm

import lstm1997

# Every test runs on the CPU kernels and on the device-generic implementation (conftest.py).
pytestmark = pytest.mark.usefixtures("implementation")

OPS = torch.ops.lstm1997
f64 = torch.float64


def scaled_online(I, H, *, seed=0, dtype=f64, **options):
    torch.manual_seed(seed)
    online = lstm1997.OnlineLSTM(I, H, dtype=dtype, **options)
    with torch.no_grad():  # larger weights than the default init: more carousel traffic to check
        for p in online.parameters():
            p.mul_(3)
    return online


def step_input(x, t, form, batch_first):
    """Step t of x (T, B, I) as a one-step call gives it: (B, I), or a chunk of one."""
    if form == "step":
        return x[t]
    return x[t].unsqueeze(1) if batch_first else x[t:t + 1]


def configurations():
    """(H, B, S, gate_feedback, activation): odd sizes, blocks, gate feedback, both squashers."""
    for H, B in [(1, 1), (3, 2), (5, 7), (12, 1), (32, 2)]:
        for S, gate_feedback in [(1, False), (1, True), (H if H > 1 else 1, True), (1, False)]:
            yield H, B, S, gate_feedback, "paper" if H % 2 else "tanh"
    yield 12, 2, 3, False, "paper"


@pytest.mark.parametrize("H,B,S,gate_feedback,activation", sorted(set(configurations())))
@pytest.mark.parametrize("form,batch_first", [("step", False), ("chunk", False), ("chunk", True)])
def test_stream_of_steps_equals_the_reference(H, B, S, gate_feedback, activation, form,
                                              batch_first):
    T, I = 6, 3
    online = scaled_online(I, H, cells_per_block=S, gate_feedback=gate_feedback,
                           activation=activation, batch_first=batch_first)
    x, targets = torch.randn(T, B, I, dtype=f64), torch.randn(T, B, H, dtype=f64)
    outputs = []
    for t in range(T):
        output = online(step_input(x, t, form, batch_first))
        outputs.append(output.reshape(B, H))
        (grad,) = torch.autograd.grad((output.reshape(B, H) - targets[t]).square().sum(), output)
        online.backward(grad)
    params = {name: p.detach().clone().requires_grad_() for name, p in online.named_parameters()}
    expected, h_n, s_n = reference_lstm(
        x, params["weight_ih_l0"], params["weight_hh_l0"], params["bias_ih_l0"],
        params["bias_hh_l0"], truncate=True, activation=activation, gate_feedback=gate_feedback,
        cells_per_block=S)
    (expected - targets).square().sum().backward()
    torch.testing.assert_close(torch.stack(outputs), expected.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(online.hidden, h_n.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(online.cell_state, s_n.detach(), rtol=0, atol=1e-12)
    for name, p in online.named_parameters():
        torch.testing.assert_close(p.grad, params[name].grad, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("S,gate_feedback", [(1, False), (2, True)])
def test_update_is_the_plain_step_of_the_chunk_ops_gradient(S, gate_feedback):
    """update() on the one-step path against gradients() (lstm_online_step_'s chunk path) and a
    plain step, with frozen bias_hh left alone, over a stream whose weights change every step."""
    online = scaled_online(3, 4, cells_per_block=S, gate_feedback=gate_feedback, seed=4)
    online.bias_hh_l0.requires_grad_(False)
    x = torch.randn(5, 2, 3, dtype=f64)
    for t in range(5):
        output = online(x[t])
        grad = torch.randn_like(output)
        grad_ih, grad_hh, grad_bias = online.gradients(grad)
        before = [p.detach().clone() for p in online.parameters()]
        online.update(grad, lr=0.1)
        for old, new, g in zip(before, online.parameters(),
                               [grad_ih, grad_hh, grad_bias, torch.zeros_like(grad_bias)]):
            torch.testing.assert_close(new.detach(), old - 0.1 * g, rtol=0, atol=1e-14)
            assert new.grad is None


@pytest.mark.parametrize("batch_first", [False, True])
def test_steps_and_chunks_mix_in_one_stream(batch_first):
    """One stream fed a chunk, steps, a chunk of one, chunks after a step's backward() (which the
    one-step path hands over to the chunk path) and after a step left without backward(), equals
    the reference run over the whole sequence."""
    online = scaled_online(3, 5, cells_per_block=5, gate_feedback=True, seed=6,
                           batch_first=batch_first)
    x, targets = torch.randn(12, 2, 3, dtype=f64), torch.randn(12, 2, 5, dtype=f64)
    pieces = [(0, 3), (3, None), (4, None), (5, 6), (6, 8), (8, None), (9, 12)]

    def piece(values, start, end):
        if end is None:
            return values[start]
        return values[start:end].transpose(0, 1) if batch_first else values[start:end]

    for start, end in pieces:
        output = online(piece(x, start, end))
        if start == 4:  # its terms must still join the traces at the next call
            continue
        online.backward(2 * (output.detach() - piece(targets, start, end)))
    params = {name: p.detach().clone().requires_grad_() for name, p in online.named_parameters()}
    expected, _, _ = reference_lstm(x, params["weight_ih_l0"], params["weight_hh_l0"],
                                    params["bias_ih_l0"], params["bias_hh_l0"],
                                    gate_feedback=True, cells_per_block=5)
    mask = torch.ones(12, 1, 1, dtype=f64)
    mask[4] = 0
    ((expected - targets).square() * mask).sum().backward()
    for name, p in online.named_parameters():
        torch.testing.assert_close(p.grad, params[name].grad, rtol=1e-10, atol=1e-10)


def assert_float32_steps_match_float64(I, H, steps, seed, batch=3, **options):
    """A float32 stream against the same stream in float64: outputs and summed gradients within
    1e-4 relative."""
    single = scaled_online(I, H, dtype=torch.float32, seed=seed, **options)
    double = scaled_online(I, H, seed=seed, **options)
    double.load_state_dict(single.state_dict())
    x = torch.randn(steps, batch, I, dtype=f64)
    for t in range(steps):
        a, b = single(x[t].float()), double(x[t])
        single.backward(torch.ones_like(a))
        double.backward(torch.ones_like(b))
        assert ((a.double() - b).abs().max() / b.abs().max()).item() < 1e-4
    for a, b in zip(single.parameters(), double.parameters()):
        assert ((a.grad.double() - b.grad).abs().max() / b.grad.abs().max()).item() < 1e-4


def test_float32_steps_match_float64():
    """Measured largest difference in the outputs and gradients after 20 steps: about 1e-6
    relative; allowed 1e-4."""
    assert_float32_steps_match_float64(7, 12, steps=20, seed=2)


@pytest.mark.parametrize("options", [{}, dict(cells_per_block=2, gate_feedback=True,
                                                activation="paper")], ids=["plain", "paper"])
def test_float32_whole_stretches_match_float64(options):
    """The update's whole stretches of 8 vectors (128 float32 values: I = 130 and, with gate
    feedback, R = 40 + 2 * 20 = 80) and their masked tails, at 3 batch rows, against float64.
    Measured largest relative difference in the outputs and gradients after 10 steps: about 1e-6;
    allowed 1e-4."""
    assert_float32_steps_match_float64(130, 40, steps=10, seed=3, **options)


@pytest.mark.parametrize("I,H,options", [
    (37, 7, {}), (16, 16, {}),
    (5, 6, dict(cells_per_block=2, gate_feedback=True, activation="paper"))])
def test_float32_one_batch_row_matches_float64(I, H, options):
    """One batch row in float32, where AVX-512 builds take the forward's products 16 gate rows at
    a time (the sums of a tile reduced together): G = 21 rows (a whole tile and a partial one),
    48 (whole tiles) and 12 (one partial tile, blocks and gate feedback), inputs with and without
    a partial vector, against float64. Allowed 1e-4 relative, as above."""
    assert_float32_steps_match_float64(I, H, steps=10, seed=4, batch=1, **options)


def one_step_state(B=3, I=5, H=6, S=1, gate_feedback=False, dtype=f64, seed=0):
    """Arguments of the two ops for one step: (state, buffers, input, weights, traces)."""
    gen = torch.Generator().manual_seed(seed)
    K = H // S
    G, R = H + 2 * K, (H + 2 * K if gate_feedback else H)

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=f64).to(dtype)
    state = [rand(B, R), rand(B, H)]
    buffers = [torch.empty(B, I, dtype=dtype), torch.empty(B, R, dtype=dtype),
               torch.empty(B, H, dtype=dtype), torch.empty(B, 3 * H, dtype=dtype)]
    weights = [rand(G, I), rand(G, R), rand(G), rand(G)]
    traces = [rand(B, 2 * H, I), rand(B, 2 * H, R), rand(B, 2 * H)]
    options = dict(cells_per_block=S, gate_feedback=gate_feedback, activation="paper")
    return state, buffers, rand(B, I), weights, traces, options


# Shapes large enough that the update's rows are split between 2 threads (B * (I + R + 1) * (6H +
# K) values of work above 2 * 3 * 32768), with and without blocks and gate feedback.
SPLIT_SHAPES = [dict(B=7, I=64, H=96), dict(B=5, I=67, H=96, S=3, gate_feedback=True)]


@pytest.mark.parametrize("shape", SPLIT_SHAPES, ids=["plain", "blocks_feedback"])
def test_results_do_not_depend_on_the_thread_count(shape):
    """Rows split between threads are each summed by one thread: bitwise the same results."""
    results = []
    for threads in (1, 2):
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            state, buffers, x, weights, traces, options = one_step_state(**shape)
            output = OPS._lstm_online_forward_(*state, *buffers, x, *weights, **options)
            OPS._lstm_online_update_(*traces, *weights, torch.ones_like(output), *buffers,
                                     alpha=-0.5, **options)
        finally:
            torch.set_num_threads(previous_threads)
        results.append([output, *state, *buffers, *weights, *traces])
    for a, b in zip(*results):
        assert torch.equal(a, b)


# More batch rows than the forward's tiles take: its net inputs come from the library's GEMM.
LIBRARY_SHAPE = dict(B=34, I=32, H=40)


@pytest.mark.parametrize("shape", [dict(S=2, gate_feedback=True)] + SPLIT_SHAPES + [LIBRARY_SHAPE],
                         ids=["small", "plain", "blocks_feedback", "library_products"])
def test_strided_arguments_take_the_aten_path(shape):
    """A non-contiguous buffer, trace or target gives the results of contiguous ones (the ATen
    implementation against the CPU loops, their rows split between threads at the larger
    shapes)."""
    plain = one_step_state(**shape)
    strided = one_step_state(**shape)

    def transposed_copy(t):
        return t.t().contiguous().t() if t.dim() == 2 else t.transpose(0, 2).contiguous().transpose(0, 2)
    state, buffers, x, weights, traces, options = strided
    buffers[3] = transposed_copy(buffers[3])
    traces[0] = transposed_copy(traces[0])
    weights[1] = transposed_copy(weights[1])
    for (state, buffers, x, weights, traces, options) in (plain, strided):
        output = OPS._lstm_online_forward_(*state, *buffers, x, *weights, **options)
        OPS._lstm_online_update_(*traces, *weights, torch.ones_like(output), *buffers,
                                 alpha=-0.5, **options)
    for a, b in zip(itertools.chain(*plain[:5]), itertools.chain(*strided[:5])):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("shape", [dict(B=1), dict(B=5, I=1), dict(S=2, gate_feedback=True)]
                         + SPLIT_SHAPES,
                         ids=["one_batch_row", "one_input", "small", "plain", "blocks_feedback"])
@pytest.mark.parametrize("threads", [1, 2])
def test_update_gives_the_same_bits_for_either_trace_layout(shape, threads):
    """_lstm_online_update_ on traces laid out gate row by gate row, as OnlineLSTM allocates them
    (a (B, 2H, width) view of a (2H, B, width) tensor), gives the bits it gives on contiguous
    traces at one thread (the CPU loop indexes either by its strides), after three steps with a
    gradient and one without. (At B = 1 the two layouts are the same memory: the case checks
    the one-batch-row loop's strides.)"""
    results = []
    for gate_rows, thread_count in [(False, 1), (True, threads)]:
        state, buffers, x, weights, traces, options = one_step_state(**shape)
        if gate_rows:
            traces = [t.transpose(0, 1).contiguous().transpose(0, 1) for t in traces]
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(thread_count)
        try:
            for step in range(3):
                output = OPS._lstm_online_forward_(*state, *buffers, x * (step + 1), *weights,
                                                   **options)
                OPS._lstm_online_update_(*traces, *weights, torch.ones_like(output), *buffers,
                                         alpha=-0.5, **options)
            OPS._lstm_online_update_(*traces, *weights, None, *buffers, alpha=-0.5, **options)
        finally:
            torch.set_num_threads(previous_threads)
        results.append([*state, *weights, *traces])
    for a, b in zip(*results):
        assert torch.equal(a, b)


@pytest.mark.parametrize("steps,backward", [(1, True), (1, False), (2, False), (2, True)])
def test_module_traces_are_contiguous_copies(steps, backward):
    """OnlineLSTM.traces: contiguous copies, whatever layout the module keeps, also while the last
    call's terms are still to join its traces (computed then by lstm_online_traces)."""
    online = lstm1997.OnlineLSTM(3, 4)
    output = online(torch.randn(steps, 5, 3) if steps > 1 else torch.randn(5, 3))
    if backward:
        online.backward(torch.ones_like(output))
    traces = online.traces
    for trace, shape in zip(traces, [(5, 8, 3), (5, 8, 4), (5, 8)]):
        assert trace.shape == shape and trace.is_contiguous()
    traces[0].add_(1)  # a copy: the module's traces are left alone
    assert not torch.equal(online.traces[0], traces[0])


def test_ops_bump_versions_and_refuse_to_be_differentiated():
    state, buffers, x, weights, traces, options = one_step_state()
    written = [*state, *buffers]
    versions = [t._version for t in written]
    output = OPS._lstm_online_forward_(*state, *buffers, x, *weights, **options)
    assert all(t._version > v for t, v in zip(written, versions))
    written = [*traces, *weights]
    versions = [t._version for t in written]
    OPS._lstm_online_update_(*traces, *weights, torch.ones_like(output), *buffers, alpha=0.1,
                             **options)
    assert all(t._version > v for t, v in zip(written, versions))
    weights[0].requires_grad_()
    with pytest.raises(RuntimeError, match="_lstm_online_forward_ is not differentiable"):
        OPS._lstm_online_forward_(*state, *buffers, x, *weights, **options)
    with pytest.raises(RuntimeError, match="_lstm_online_update_ is not differentiable"):
        OPS._lstm_online_update_(*traces, *weights, torch.ones_like(output), *buffers, alpha=0.1,
                                 **options)
    with torch.no_grad():  # as OnlineLSTM calls them
        OPS._lstm_online_update_(*traces, *weights, torch.ones_like(output), *buffers, alpha=0.1,
                                 **options)


FORWARD_ERRORS = [
    ("x", torch.zeros(3, 5), r"input: expected dtype Double|weight_ih: expected dtype Float"),
    ("x", torch.zeros(2, 3, 5, dtype=f64), r"input: expected one step, a 2-D tensor .* got 3-D tensor of shape \[2, 3, 5\]"),
    ("x", torch.zeros(3, 4, dtype=f64), r"weight_ih: expected shape \[18, 4\]"),
    ("state0", torch.zeros(2, 6, dtype=f64), r"hidden: expected shape \[3, 6\]"),
    ("state1", torch.zeros(3, 5, dtype=f64), r"cell_state: expected shape \[3, 6\]"),
    ("buffers0", torch.zeros(3, 4, dtype=f64), r"step_input: expected shape \[3, 5\]"),
    ("buffers1", torch.zeros(3, 7, dtype=f64), r"previous: expected shape \[3, 6\]"),
    ("buffers2", torch.zeros(3, 6), r"squashed_state: expected dtype Double"),
    ("buffers3", torch.zeros(3, 6, dtype=f64, device="meta"), r"gates: expected device cpu"),
    ("weights0", torch.zeros(18, 4, dtype=f64), r"weight_ih: expected shape \[18, 5\]"),
    ("weights2", torch.zeros(17, dtype=f64), r"bias_ih: expected shape \[18\]"),
    ("weights1", torch.zeros(18, 5, dtype=f64), r"weight_hh: expected shape \(3\*hidden_size"),
    ("weights3", torch.zeros(18), r"bias_hh: expected dtype Double"),
    ("cells_per_block", 4, r"cells_per_block: expected a divisor of hidden_size"),
    ("activation", "relu", r"activation"),
]


@pytest.mark.parametrize("name,value,pattern", FORWARD_ERRORS)
def test_forward_op_errors(name, value, pattern):
    state, buffers, x, weights, traces, options = one_step_state()
    groups = {"state": state, "buffers": buffers, "weights": weights}
    if name == "x":
        x = value
    elif name in options:
        options[name] = value
    else:
        groups[name[:-1]][int(name[-1])] = value
    with pytest.raises((RuntimeError, TypeError, ValueError), match=pattern):
        OPS._lstm_online_forward_(*state, *buffers, x, *weights, **options)


UPDATE_ERRORS = [
    ("traces0", torch.zeros(3, 12, 4, dtype=f64), r"trace_ih: expected shape \[3, 12, 5\]"),
    ("traces1", torch.zeros(3, 12, 7, dtype=f64), r"trace_hh: expected shape \[3, 12, 6\]"),
    ("traces2", torch.zeros(3, 12), r"trace_bias: expected dtype Double"),
    ("buffers0", torch.zeros(3, 5, 1, dtype=f64), r"step_input: expected a 2-D tensor"),
    ("buffers1", torch.zeros(2, 6, dtype=f64), r"previous: expected shape \[3, 6\]"),
    ("buffers3", torch.zeros(3, 12, dtype=f64), r"gates: expected shape \[3, 18\]"),
    ("grad", torch.zeros(3, 5, dtype=f64), r"grad_output: expected shape \[3, 6\]"),
    ("grad", torch.zeros(2, 3, 6, dtype=f64), r"grad_output: expected shape \[1, 3, 6\]"),
    ("weights0", torch.zeros(18, 4, dtype=f64), r"target_weight_ih: expected shape \[18, 5\]"),
    ("weights3", torch.zeros(18), r"target_bias_hh: expected dtype Double"),
    ("cells_per_block", 4, r"cells_per_block: expected a positive divisor of hidden_size \(6"),
    ("activation", "relu", r"activation"),
    ("buffers2", torch.zeros(3, 5, dtype=f64), r"gates: expected shape \[3, 15\]"),
    ("traces1", torch.zeros(3, 12, 6), r"trace_hh: expected dtype Double"),
    ("weights1", torch.zeros(18, 5, dtype=f64), r"target_weight_hh: expected shape \[18, 6\]"),
    ("weights2", torch.zeros(17, dtype=f64), r"target_bias_ih: expected shape \[18\]"),
]


@pytest.mark.parametrize("name,value,pattern", UPDATE_ERRORS)
def test_update_op_errors(name, value, pattern):
    state, buffers, x, weights, traces, options = one_step_state()
    grad = torch.ones(3, 6, dtype=f64)
    groups = {"traces": traces, "buffers": buffers, "weights": weights}
    if name == "grad":
        grad = value
    elif name in options:
        options[name] = value
    else:
        groups[name[:-1]][int(name[-1])] = value
    with pytest.raises((RuntimeError, TypeError, ValueError), match=pattern):
        OPS._lstm_online_update_(*traces, *weights, grad, *buffers, alpha=0.1, **options)


def test_module_errors_on_the_one_step_path():
    online = lstm1997.OnlineLSTM(3, 4)
    with pytest.raises(RuntimeError, match=r"OnlineLSTM: backward: expected a forward\(\) call"):
        online.update(torch.zeros(2, 4), 0.1)
    output = online(torch.zeros(1, 2, 3))
    with pytest.raises(RuntimeError, match=r"OnlineLSTM: grad_output: expected shape \[1, 2, 4\]"):
        online.backward(torch.zeros(2, 4))
    with pytest.raises(RuntimeError, match=r"expected batch size 2 \(the stream's, until reset"):
        online(torch.zeros(3, 3))
    with pytest.raises(TypeError, match=r"weight_ih: expected dtype Double"):
        online(torch.zeros(2, 3, dtype=f64))
    # A call closes the last one's window for backward(), as a successful one does.
    with pytest.raises(RuntimeError, match=r"the traces already hold the last chunk"):
        online.update(torch.ones_like(output), 0.1)
    output = online(torch.zeros(2, 3))
    online.update(torch.ones_like(output), 0.1)
    assert torch.isfinite(online.weight_ih_l0).all()
    # After a step's update the one-step path takes the next call first: what is not a step goes
    # on to the chunk path's checks.
    for shape in [(3,), (1, 1, 2, 3)]:
        with pytest.raises(ValueError, match=rf"OnlineLSTM: input: expected a 3-D chunk .* got "
                                             rf"{len(shape)}-D"):
            online(torch.zeros(shape))
    with pytest.raises(RuntimeError, match=r"expected batch size 2 \(the stream's, until reset"):
        online(torch.zeros(2, 3, 3))


@pytest.mark.parametrize("form,batch_first", [("step", False), ("chunk", False), ("chunk", True)])
def test_one_step_bookkeeping(form, batch_first):
    """What the module's bindings do around the two ops: the returned output is a new leaf that
    requires grad (not under no_grad), shaped like the input's step; backward() makes .grad where
    there is none, adds to it where there is one, and leaves a frozen parameter alone; a
    grad_output of another dtype is converted; a wrong grad_output shape or batch size is refused
    without touching the stream. The gradient is compared with gradients(), which the chunk ops
    compute."""
    torch.manual_seed(0)
    online = scaled_online(3, 4, batch_first=batch_first)
    online.bias_hh_l0.requires_grad_(False)
    x = torch.randn(3, 2, 3, dtype=f64)
    output = online(step_input(x, 0, form, batch_first))
    expected_shape = [2, 4] if form == "step" else ([2, 1, 4] if batch_first else [1, 2, 4])
    assert list(output.shape) == expected_shape
    assert output.is_leaf and output.requires_grad
    grad_output = torch.randn(expected_shape, dtype=f64)
    first = online.gradients(grad_output)
    wrong = torch.zeros(expected_shape[:-1] + [5], dtype=f64)
    with pytest.raises(RuntimeError, match=r"OnlineLSTM: grad_output: expected shape \["):
        online.backward(wrong)
    online.backward(grad_output.float())
    for name, gradient in zip(("weight_ih_l0", "weight_hh_l0", "bias_ih_l0"), first):
        # float32 grad_output: the gradient to float32 precision
        torch.testing.assert_close(getattr(online, name).grad, gradient, rtol=1e-5, atol=1e-6)
    assert online.bias_hh_l0.grad is None
    with pytest.raises(RuntimeError, match=r"expected batch size 2 \(the stream's, until reset"):
        online(torch.zeros(3, 3, dtype=f64))
    with torch.no_grad():
        output = online(step_input(x, 1, form, batch_first))
    assert not output.requires_grad
    second = online.gradients(grad_output)
    before = online.weight_hh_l0.grad.clone()
    online.backward(grad_output)
    torch.testing.assert_close(online.weight_hh_l0.grad, before + second[1], rtol=1e-12,
                               atol=1e-12)
    assert online.bias_hh_l0.grad is None


@pytest.mark.parametrize("chunk_of_one", [False, True])
def test_opcheck(chunk_of_one):
    state, buffers, x, weights, traces, options = one_step_state(S=2, gate_feedback=True)
    if chunk_of_one:
        x = x.unsqueeze(0)
    torch.library.opcheck(OPS._lstm_online_forward_.default,
                          (*state, *buffers, x, *weights), options)
    grad = torch.randn(*x.shape[:-1], 6, dtype=f64)
    for grad_output in (grad, None):
        torch.library.opcheck(OPS._lstm_online_update_.default,
                              (*traces, *[w.clone() for w in weights], grad_output, *buffers),
                              dict(options, alpha=-0.1))
