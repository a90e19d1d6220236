"""Online learning (OnlineLSTM, lstm_online_step_, lstm_online_traces, lstm_online_grads): the paper's truncated
gradient computed forward in time must equal, summed over a sequence, the gradient of the detached
plain-PyTorch reference loop, whatever the chunking; memory must not grow with the stream."""
import copy
import pickle

import pytest
import torch
from conftest import make_args
from reference import reference_lstm
from test_reliability import RESIDENT, run_python

import lstm1997

# Every test runs on the CPU kernels and on the device-generic implementation (conftest.py).
pytestmark = pytest.mark.usefixtures("implementation")

OPS = torch.ops.lstm1997
f64 = torch.float64


def stream_gradients(online, x, targets, chunk):
    """Feeds x (T, B, I) through `online` in chunks with a squared-error loss at every step, calling
    backward() after each chunk. Returns the total loss."""
    total = 0.0
    for start in range(0, x.shape[0], chunk):
        output = online(x[start:start + chunk] if chunk > 1 else x[start])
        target = targets[start:start + chunk] if chunk > 1 else targets[start]
        loss = (output - target).square().sum()
        (grad,) = torch.autograd.grad(loss, output)
        online.backward(grad)
        total += loss.item()
    return total


def reference_gradients(online, x, targets):
    params = {name: p.detach().clone().requires_grad_() for name, p in online.named_parameters()}
    output, _, _ = reference_lstm(x, params["weight_ih_l0"], params["weight_hh_l0"],
                                  params.get("bias_ih_l0"), params.get("bias_hh_l0"),
                                  truncate=True, activation=online.activation)
    loss = (output - targets).square().sum()
    loss.backward()
    return loss.item(), {name: p.grad for name, p in params.items()}


@pytest.mark.parametrize("chunk", [1, 3, 10])
@pytest.mark.parametrize("activation", ["tanh", "paper"])
@pytest.mark.parametrize("bias", [True, False])
def test_sum_of_online_gradients_equals_truncated_backward(chunk, activation, bias):
    torch.manual_seed(0)
    T, B, I, H = 10, 3, 4, 5
    online = lstm1997.OnlineLSTM(I, H, bias=bias, activation=activation, dtype=f64)
    with torch.no_grad():  # larger weights than the default init: more carousel traffic to check
        for p in online.parameters():
            p.mul_(3)
    x, targets = torch.randn(T, B, I, dtype=f64), torch.randn(T, B, H, dtype=f64)
    loss = stream_gradients(online, x, targets, chunk)
    expected_loss, expected = reference_gradients(online, x, targets)
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    for name, p in online.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-10, atol=1e-10)


def test_online_gradient_is_not_the_exact_gradient():
    """The traces follow the cell state only: with recurrent weights, exact BPTT differs."""
    torch.manual_seed(1)
    online = lstm1997.OnlineLSTM(3, 4, dtype=f64)
    x, targets = torch.randn(8, 2, 3, dtype=f64), torch.randn(8, 2, 4, dtype=f64)
    stream_gradients(online, x, targets, 1)
    exact = lstm1997.LSTM(3, 4, truncate=False, dtype=f64)
    exact.load_state_dict(online.state_dict())
    (exact(x)[0] - targets).square().sum().backward()
    assert not torch.allclose(online.weight_hh_l0.grad, exact.weight_hh_l0.grad, atol=1e-6)


def test_batch_first_and_state_across_calls_match_one_pass():
    torch.manual_seed(2)
    online = lstm1997.OnlineLSTM(3, 4, batch_first=True, dtype=f64)
    full = lstm1997.LSTM(3, 4, batch_first=True, dtype=f64)
    full.load_state_dict(online.state_dict())
    x = torch.randn(2, 7, 3, dtype=f64)
    pieces = [online(x[:, :3]), online(x[:, 3]).unsqueeze(1), online(x[:, 4:])]
    expected, (h_n, s_n) = full(x)
    torch.testing.assert_close(torch.cat(pieces, dim=1), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(online.hidden, h_n[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(online.cell_state, s_n[0], rtol=0, atol=1e-12)
    online.reset()
    torch.testing.assert_close(online(x), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("one_step", [True, False], ids=["steps", "chunks"])
def test_a_stream_after_reset_is_a_fresh_modules(one_step):
    """reset() keeps the traces' memory for the next stream of the same batch size, zeroed; a
    stream of another size gets traces of its own. Either way the stream after reset() must give
    the gradients of a module that never saw the one before, bit for bit."""
    torch.manual_seed(5)
    online = lstm1997.OnlineLSTM(3, 4, dtype=f64)

    def run_stream(module, x):
        for t in range(x.shape[0]):
            output = module(x[t] if one_step else x[t:t + 1])
            module.backward(torch.ones_like(output))
        return [p.grad.clone() for p in module.parameters()]

    run_stream(online, torch.randn(6, 2, 3, dtype=f64))  # traces far from zero
    for batch in (2, 3, 2):
        x = torch.randn(5, batch, 3, dtype=f64)
        fresh = lstm1997.OnlineLSTM(3, 4, dtype=f64)
        fresh.load_state_dict(online.state_dict())
        online.zero_grad()
        online.reset()
        for got, expected in zip(run_stream(online, x), run_stream(fresh, x)):
            assert torch.equal(got, expected)


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
@pytest.mark.parametrize("when", ["after forward", "after backward", "after a chunk"])
def test_a_copy_mid_stream_goes_on_as_the_stream(how, when):
    """A copy of a module mid-stream (deepcopy, pickle), with a step's terms still pending or not,
    or after a chunk, continues the stream on state of its own: the copy steps first, and then
    the original; both must give the gradients of a module that saw the stream uncopied."""
    torch.manual_seed(6)
    online = lstm1997.OnlineLSTM(3, 4, dtype=f64)
    x = torch.randn(8, 2, 3, dtype=f64)
    uncopied = lstm1997.OnlineLSTM(3, 4, dtype=f64)
    uncopied.load_state_dict(online.state_dict())
    gradients = []
    for t in range(x.shape[0]):
        uncopied.zero_grad()
        uncopied.backward(torch.ones_like(uncopied(x[t])))
        gradients.append([p.grad.clone() for p in uncopied.parameters()])
    for t in range(2):
        online.backward(torch.ones_like(online(x[t])))
    if when == "after a chunk":
        online.backward(torch.ones_like(online(x[2:4])))
        start = 4
    else:
        output = online(x[2])
        if when == "after backward":
            online.backward(torch.ones_like(output))
        start = 3
    twin = pickle.loads(pickle.dumps(online)) if how == "pickle" else copy.deepcopy(online)
    for module in (twin, online):  # the copy first: the original must not see its steps
        if when == "after forward":
            module.zero_grad()
            module.backward(torch.ones(2, 4, dtype=f64))
            for got, expected in zip(module.parameters(), gradients[2]):
                torch.testing.assert_close(got.grad, expected, rtol=1e-12, atol=1e-14)
        for t in range(start, x.shape[0]):
            module.zero_grad()
            module.backward(torch.ones_like(module(x[t])))
            for got, expected in zip(module.parameters(), gradients[t]):
                torch.testing.assert_close(got.grad, expected, rtol=1e-12, atol=1e-14)


def test_traces_have_the_documented_size():
    online = lstm1997.OnlineLSTM(6, 5)
    online(torch.randn(4, 3, 6))
    B, H, I = 3, 5, 6
    assert [tuple(t.shape) for t in online.traces] == [(B, 2 * H, I), (B, 2 * H, H), (B, 2 * H)]
    assert sum(t.numel() for t in online.traces) == B * 2 * H * (I + H + 1)


def test_update_is_a_plain_gradient_step():
    torch.manual_seed(3)
    online = lstm1997.OnlineLSTM(3, 4, dtype=f64)
    before = [p.detach().clone() for p in online.parameters()]
    output = online(torch.randn(5, 2, 3, dtype=f64))
    grad = torch.randn_like(output)
    grad_ih, grad_hh, grad_bias = online.gradients(grad)
    online.update(grad, lr=0.1)
    for old, new, g in zip(before, online.parameters(), [grad_ih, grad_hh, grad_bias, grad_bias]):
        torch.testing.assert_close(new.detach(), old - 0.1 * g, rtol=0, atol=1e-15)
        assert new.grad is None


def test_online_learning_with_updates_at_every_step_learns():
    """The paper's recipe: a weight update after every step. The task needs memory across a lag:
    at every step, output the sign of the first input of the sequence (a readout trained alongside
    by autograd). The loss of the last 200 sequences must be well below that of the first 200."""
    torch.manual_seed(0)
    cell = lstm1997.OnlineLSTM(2, 8)
    readout = torch.nn.Linear(8, 1)
    optimizer = torch.optim.SGD(readout.parameters(), lr=0.1)
    losses = []
    for _ in range(1000):
        cell.reset()
        first = torch.randint(0, 2, (4,)).float() * 2 - 1
        sequence_loss = 0.0
        for t in range(10):
            x = torch.stack([first if t == 0 else torch.zeros(4), torch.full((4,), float(t == 0))], 1)
            h = cell(x)
            loss = (readout(h).squeeze(1) - first).square().mean()
            optimizer.zero_grad()
            loss.backward()
            cell.update(h.grad, lr=0.5)
            optimizer.step()
            sequence_loss += loss.item()
        losses.append(sequence_loss / 10)
    assert sum(losses[-200:]) < 0.3 * sum(losses[:200]), (sum(losses[:200]), sum(losses[-200:]))


STREAM_RUN = RESIDENT + """
    torch.manual_seed(0)
    cell, readout = lstm1997.OnlineLSTM(4, 8), torch.nn.Linear(8, 1)
    chunk, steps = 1000, 1_000_000
    def run(chunks):
        for _ in range(chunks):
            x = torch.randn(chunk, 2, 4)
            h = cell(x)
            loss = (readout(h).squeeze(-1) - x[..., 0]).square().mean()
            loss.backward()
            cell.update(h.grad, lr=1e-3)
            readout.zero_grad()
    run(50)
    start = resident()
    run(steps // chunk)
    print(json.dumps({"start": start, "end": resident(),
                      "finite": all(bool(p.isfinite().all()) for p in cell.parameters())}))
"""


def test_stream_of_a_million_steps_in_flat_memory():
    """1,000,000 steps (in chunks of 1,000, an update after each) after 50,000 warm-up steps:
    resident memory grows by less than 8 MiB; a chunk's tensors alone are about 0.2 MB, so keeping
    anything per chunk would show. One thread: the test is about memory, and with two threads the
    device-generic implementation slows down many times over when another process keeps a core
    busy (measured: 0.025 s against 1.6 s per chunk of 1,000 steps), which made the test time out
    on a loaded machine."""
    run = run_python(STREAM_RUN, env={"OMP_NUM_THREADS": "1"})
    assert run["finite"]
    assert run["end"] - run["start"] < 8 * 2**20, run


def test_errors():
    online = lstm1997.OnlineLSTM(3, 4)
    with pytest.raises(RuntimeError, match=r"OnlineLSTM: backward: expected a forward\(\) call first"):
        online.backward(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"OnlineLSTM: input: expected a 3-D chunk .* got 1-D"):
        online(torch.zeros(3))
    online(torch.zeros(5, 2, 3))
    with pytest.raises(RuntimeError, match=r"OnlineLSTM: input: expected batch size 2 \(the stream's, until reset\(\)\), got 3"):
        online(torch.zeros(3, 3))
    with pytest.raises(RuntimeError, match=r"OnlineLSTM: grad_output: expected shape \[5, 2, 4\]"):
        online.backward(torch.zeros(2, 4))
    with pytest.raises(RuntimeError, match=r"weight_ih: expected shape \[12, 5\]"):
        online(torch.zeros(1, 2, 5))
    with pytest.raises(TypeError, match=r"weight_ih: expected dtype Double"):
        online(torch.zeros(1, 2, 3, dtype=f64))
    with pytest.raises(ValueError, match=r"OnlineLSTM: hidden_size: expected a positive int, got 0"):
        lstm1997.OnlineLSTM(3, 0)
    with pytest.raises(ValueError, match=r"OnlineLSTM: activation: expected one of"):
        lstm1997.OnlineLSTM(3, 2, activation="relu")


def chunk_args(T=4, B=3, I=5, H=6):
    x, w_ih, w_hh, b_ih, b_hh, h0, s0 = make_args(T, B, I, H, requires_grad=False)
    output, h_n, s_n, squashed_state, gates = OPS._lstm_forward(x, w_ih, w_hh, b_ih, b_hh, h0, s0)
    gen = torch.Generator().manual_seed(5)
    traces = [torch.randn(*shape, generator=gen, dtype=f64)
              for shape in [(B, 2 * H, I), (B, 2 * H, H), (B, 2 * H)]]
    return dict(x=x, w_ih=w_ih, w_hh=w_hh, h0=h0, output=output, squashed_state=squashed_state,
                gates=gates, traces=traces)


@pytest.mark.parametrize("name,value,pattern", [
    ("trace_ih", torch.zeros(3, 12, 4, dtype=f64), r"trace_ih: expected shape \[3, 12, 5\] \(batch, 2\*hidden_size, input_size\)"),
    ("trace_hh", torch.zeros(3, 18, 6, dtype=f64), r"trace_hh: expected shape \[3, 12, 6\]"),
    ("trace_bias", torch.zeros(3, 12), r"trace_bias: expected dtype Double"),
    ("trace_bias", torch.zeros(3, 12, dtype=f64, device="meta"), r"trace_bias: expected device cpu"),
    ("gates", torch.zeros(4, 3, 24, dtype=f64), r"gates: expected shape \[4, 3, 18\]"),
    ("h0", torch.zeros(2, 6, dtype=f64), r"h0: expected shape \[3, 6\]"),
    ("x", torch.zeros(12, 5, dtype=f64), r"input: expected a 3-D tensor .* got 2-D"),
])
def test_op_errors(name, value, pattern):
    for op in ("step", "traces", "grads"):
        args = chunk_args()
        if name.startswith("trace_"):
            args["traces"][["trace_ih", "trace_hh", "trace_bias"].index(name)] = value
        else:
            args[name] = value
        exc = TypeError if "dtype" in pattern else RuntimeError
        with pytest.raises(exc, match=pattern):
            if op == "step":
                OPS.lstm_online_step_(*args["traces"], torch.ones_like(args["output"]), args["x"],
                                      args["w_ih"], args["w_hh"], args["h0"], args["output"],
                                      args["squashed_state"], args["gates"])
            elif op == "traces":
                OPS.lstm_online_traces(args["x"], args["h0"], args["output"], args["gates"],
                                       *args["traces"])
            else:
                OPS.lstm_online_grads(torch.ones_like(args["output"]), args["x"], args["w_ih"],
                                      args["w_hh"], args["h0"], args["output"],
                                      args["squashed_state"], args["gates"], *args["traces"])


@pytest.mark.parametrize("activation", ["tanh", "paper"])
@pytest.mark.parametrize("with_h0", [True, False])
def test_opcheck(activation, with_h0):
    a = chunk_args()
    h0 = a["h0"] if with_h0 else None
    torch.library.opcheck(OPS.lstm_online_traces.default,
                          (a["x"], h0, a["output"], a["gates"], *a["traces"]),
                          {"activation": activation})
    torch.library.opcheck(OPS.lstm_online_grads.default,
                          (torch.randn_like(a["output"]), a["x"], a["w_ih"], a["w_hh"], h0,
                           a["output"], a["squashed_state"], a["gates"], *a["traces"]),
                          {"activation": activation})


def chunk_configurations():
    # (T, S, gate_feedback): one step (the paper's case) and a chunk, with and without blocks
    return [(1, 1, False), (4, 1, False), (1, 2, True), (3, 3, True)]


def layer_chunk(T, S, gate_feedback, B=3, I=5, H=6, dtype=f64):
    x, w_ih, w_hh, b_ih, b_hh, h0, s0 = make_args(T, B, I, H, cells_per_block=S,
                                                  gate_feedback=gate_feedback, dtype=dtype,
                                                  requires_grad=False)
    options = dict(cells_per_block=S, gate_feedback=gate_feedback, activation="paper")
    output, _, _, squashed_state, gates = OPS._lstm_forward(x, w_ih, w_hh, b_ih, b_hh, h0, s0,
                                                            activation="paper",
                                                            cells_per_block=S,
                                                            gate_feedback=gate_feedback)
    gen = torch.Generator().manual_seed(7)
    R = w_hh.shape[1]
    traces = [torch.randn(*shape, generator=gen, dtype=f64).to(dtype)
              for shape in [(B, 2 * H, I), (B, 2 * H, R), (B, 2 * H)]]
    chunk = (x, w_ih, w_hh, h0, output, squashed_state, gates)
    return chunk, traces, options


def gate_row_major(trace):
    """The same values as `trace` (B, 2H[, width]), laid out gate row by gate row, as OnlineLSTM
    allocates its traces: a (B, 2H[, width]) view of a (2H, B[, width]) tensor."""
    return trace.transpose(0, 1).contiguous().transpose(0, 1)


@pytest.mark.parametrize("T,S,gate_feedback,B,I,H", [
    (1, 1, False, 3, 37, 24), (4, 1, False, 3, 37, 24), (3, 3, True, 5, 37, 24),
    (1, 2, True, 7, 37, 24), (2, 1, False, 1, 37, 24), (1, 1, False, 5, 1, 24),
    # rows split between 2 threads (the trace pass's grain is below 2H rows)
    (1, 1, False, 16, 64, 96), (3, 2, True, 16, 64, 96)])
@pytest.mark.parametrize("threads", [1, 2])
def test_step_gives_the_same_bits_for_either_trace_layout(T, S, gate_feedback, B, I, H,
                                                          threads):
    """lstm_online_step_ on traces laid out gate row by gate row (OnlineLSTM's) at 1 or 2 threads
    gives the bits it gives on contiguous traces at the default thread count, with and without
    a gradient and advance."""
    chunk, traces, options = layer_chunk(T, S, gate_feedback, B=B, I=I, H=H)
    grad_output = torch.randn_like(chunk[4])
    for grad, advance in [(grad_output, True), (None, True), (grad_output, False)]:
        contiguous = [t.clone() for t in traces]
        expected = OPS.lstm_online_step_(*contiguous, grad, *chunk, advance=advance, **options)
        gate_rows = [gate_row_major(t) for t in traces]
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            grads = OPS.lstm_online_step_(*gate_rows, grad, *chunk, advance=advance, **options)
        finally:
            torch.set_num_threads(previous_threads)
        for actual, wanted in zip([*gate_rows, *grads], [*contiguous, *expected]):
            assert torch.equal(actual, wanted)


@pytest.mark.parametrize("T,S,gate_feedback", chunk_configurations())
@pytest.mark.parametrize("with_h0", [True, False])
def test_step_in_place_equals_the_functional_ops(T, S, gate_feedback, with_h0):
    """lstm_online_step_ = lstm_online_grads (its gradients, from the traces as they come in) and
    lstm_online_traces (the traces it leaves), in one pass over the traces. (On the CPU, one step
    with a gradient takes a path of its own.)"""
    (x, w_ih, w_hh, h0, output, squashed_state, gates), traces, options = layer_chunk(
        T, S, gate_feedback)
    if not with_h0:
        h0 = None
        output, _, _, squashed_state, gates = OPS._lstm_forward(
            x, w_ih, w_hh, None, None, None, None, activation="paper", cells_per_block=S,
            gate_feedback=gate_feedback)
    grad_output = torch.randn_like(output)
    expected_traces = OPS.lstm_online_traces(x, h0, output, gates, *traces, **options)
    expected_grads = OPS.lstm_online_grads(grad_output, x, w_ih, w_hh, h0, output, squashed_state,
                                           gates, *traces, **options)
    stepped = [t.clone() for t in traces]
    grads = OPS.lstm_online_step_(*stepped, grad_output, x, w_ih, w_hh, h0, output,
                                  squashed_state, gates, **options)
    for actual, expected in zip([*stepped, *grads], [*expected_traces, *expected_grads]):
        torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
    # Without a gradient: zeros, traces advanced; without advance: the traces untouched.
    stepped = [t.clone() for t in traces]
    grads = OPS.lstm_online_step_(*stepped, None, x, w_ih, w_hh, h0, output, squashed_state,
                                  gates, **options)
    assert not any(g.any() for g in grads)
    for actual, expected in zip(stepped, expected_traces):
        torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
    kept = [t.clone() for t in traces]
    grads = OPS.lstm_online_step_(*kept, grad_output, x, w_ih, w_hh, h0, output, squashed_state,
                                  gates, advance=False, **options)
    assert all(torch.equal(a, b) for a, b in zip(kept, traces))
    for actual, expected in zip(grads, expected_grads):
        torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("T,S,gate_feedback,B,I,H", [
    # widths of 4k + 0 .. 3 whole vectors (float64: 8 values; float32: 16 on AVX-512, 8 on
    # AVX2) and a tail of values
    (2, 1, False, 7, 43, 5), (3, 3, True, 2, 49, 9), (10, 1, False, 1, 63, 3),
    (4, 2, True, 5, 32, 6), (2, 1, False, 3, 131, 13),
    # rows split between 2 threads (the pass's grain, 32768 / (B (I + R + 1)) rows, is below 2H)
    (3, 1, False, 16, 64, 96), (2, 2, True, 9, 83, 40)])
@pytest.mark.parametrize("dtype", [f64, torch.float32])
@pytest.mark.parametrize("gate_rows", [True, False], ids=["gate_rows", "contiguous"])
@pytest.mark.parametrize("threads", [1, 2])
def test_chunk_pass_in_row_blocks_equals_the_functional_ops(T, S, gate_feedback, B, I, H, dtype,
                                                            gate_rows, threads):
    """Chunks of two steps or more take the CPU's trace pass several gate rows at a time: against
    lstm_online_traces and lstm_online_grads (ATen's ops, in float64), at widths that end in each
    kind of leftover, row counts that do not divide into the blocks, either trace layout, rows
    split between threads, with the gradient and without it."""
    chunk64, traces64, options = layer_chunk(T, S, gate_feedback, B=B, I=I, H=H)
    grad_output = torch.randn_like(chunk64[4])
    expected = [*OPS.lstm_online_traces(chunk64[0], chunk64[3], chunk64[4], chunk64[6],
                                        *traces64, **options),
                *OPS.lstm_online_grads(grad_output, *chunk64, *traces64, **options)]
    chunk = [t.to(dtype) for t in chunk64]
    traces = [t.to(dtype) for t in traces64]
    if gate_rows:
        traces = [gate_row_major(t) for t in traces]
    # The traces' advance alone (no gradient: no sums); clone keeps a dense tensor's strides.
    advanced = [t.clone() for t in traces]
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        grads = OPS.lstm_online_step_(*traces, grad_output.to(dtype), *chunk, **options)
        OPS.lstm_online_step_(*advanced, None, *chunk, **options)
    finally:
        torch.set_num_threads(previous_threads)
    tolerance = 1e-12 if dtype == f64 else 1e-5
    for actual, wanted in zip([*traces, *grads, *advanced], expected + expected[:3]):
        torch.testing.assert_close(actual.double(), wanted, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("T,S,gate_feedback", chunk_configurations())
def test_step_float32_matches_float64(T, S, gate_feedback):
    """The CPU's fused pass in float32 (ATen's in the generic run) against float64: measured
    largest relative error 2e-7; allowed 1e-5."""
    chunk, traces, options = layer_chunk(T, S, gate_feedback)
    single_chunk, single_traces, _ = layer_chunk(T, S, gate_feedback, dtype=torch.float32)
    grad_output = torch.randn_like(chunk[4])
    grads = OPS.lstm_online_step_(*traces, grad_output, *chunk, **options)
    single = OPS.lstm_online_step_(*single_traces, grad_output.float(), *single_chunk, **options)
    for a, b in zip([*single_traces, *single], [*traces, *grads]):
        assert ((a.double() - b).abs().max() / b.abs().max()).item() < 1e-5


def test_one_backward_per_forward():
    online = lstm1997.OnlineLSTM(3, 4, dtype=f64)
    output = online(torch.randn(2, 3, dtype=f64))
    grad = torch.randn_like(output)
    first = online.gradients(grad)
    again = online.gradients(grad)  # gradients() leaves the traces alone
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    online.backward(grad)
    with pytest.raises(RuntimeError, match=r"OnlineLSTM: backward: the traces already hold the "
                                           r"last chunk"):
        online.backward(grad)


def test_a_refilled_input_buffer_and_reading_traces_change_nothing():
    """The stream's input may come through one buffer refilled in place, and `traces` may be read
    between forward() and backward(): the gradients and traces stay those of the inputs given."""
    torch.manual_seed(1)
    x = torch.randn(6, 2, 3, dtype=f64)
    plain = lstm1997.OnlineLSTM(3, 4, dtype=f64)
    buffered = lstm1997.OnlineLSTM(3, 4, dtype=f64)
    buffered.load_state_dict(plain.state_dict())
    buffer = torch.empty(2, 3, dtype=f64)
    for t in range(6):
        plain_output = plain(x[t])
        buffer.copy_(x[t])
        buffered_output = buffered(buffer)
        buffered.traces  # noqa: B018 (read, then trained on)
        if t % 2:  # a loss on every other step only
            plain.backward(torch.ones_like(plain_output))
            buffered.backward(torch.ones_like(buffered_output))
    for a, b in zip([*plain.traces, *(p.grad for p in plain.parameters())],
                    [*buffered.traces, *(p.grad for p in buffered.parameters())]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_step_bumps_the_traces_versions():
    (x, w_ih, w_hh, h0, output, squashed_state, gates), traces, options = layer_chunk(1, 1, False)
    versions = [t._version for t in traces]
    OPS.lstm_online_step_(*traces, None, x, w_ih, w_hh, h0, output, squashed_state, gates,
                          **options)
    assert all(t._version > v for t, v in zip(traces, versions))


def test_traces_are_current_when_read():
    """Reading `traces` adds the last chunk's terms that no backward() has added yet."""
    torch.manual_seed(0)
    online = lstm1997.OnlineLSTM(3, 4, dtype=f64)
    x = torch.randn(5, 2, 3, dtype=f64)
    online(x[:2])
    online(x[2:])
    read = [t.clone() for t in online.traces]
    stepwise = lstm1997.OnlineLSTM(3, 4, dtype=f64)
    stepwise.load_state_dict(online.state_dict())
    for t in range(5):
        stepwise(x[t])
        stepwise.backward(torch.zeros(2, 4, dtype=f64))
    for a, b in zip(read, stepwise.traces):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_step_opcheck():
    (x, w_ih, w_hh, h0, output, squashed_state, gates), traces, options = layer_chunk(2, 2, True)
    for grad_output in (torch.randn_like(output), None):
        torch.library.opcheck(OPS.lstm_online_step_.default,
                              (*traces, grad_output, x, w_ih, w_hh, h0, output, squashed_state,
                               gates), options)


def test_ops_refuse_to_be_differentiated():
    a = chunk_args()
    with pytest.raises(RuntimeError, match="lstm_online_traces is not differentiable"):
        OPS.lstm_online_traces(a["x"].requires_grad_(), a["h0"], a["output"], a["gates"],
                               *a["traces"])
