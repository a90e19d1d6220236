"""Gate feedback (gate_feedback=True): the paper's network, in which every memory cell and gate
also sees the outputs of all gates at t-1, so that the recurrent input is
r_{t-1} = [input gates (K) | cell outputs (H) | output gates (K)] and h0 / h_n are that r.

Every result is compared with the plain-PyTorch loop of tests/reference.py, which feeds back the
whole r_{t-1} and, for the paper's truncated gradient, detaches all of it where it enters the
recurrent product (appendix A.1: no error through any recurrent connection)."""
import pytest
import torch
from conftest import Holder, check_packed_module, make_args
from reference import reference_lstm

import lstm1997

# Every test runs on the CPU kernels and on the device-generic implementation (conftest.py).
pytestmark = pytest.mark.usefixtures("implementation")

OPS = torch.ops.lstm1997
f64 = torch.float64


def results_and_gradients(run, args, seed):
    """The outputs of run(*args) and the gradients of a random linear loss on them with respect to
    every argument given (zero where the loss does not depend on one)."""
    out = run(*args)
    gen = torch.Generator().manual_seed(seed)
    upstream = [torch.randn(t.shape, generator=gen, dtype=t.dtype) for t in out]
    loss = sum((o * u).sum() for o, u in zip(out, upstream))
    present = [a for a in args if a is not None]
    grads = torch.autograd.grad(loss, present, allow_unused=True)
    grads = [torch.zeros_like(a) if g is None else g for a, g in zip(present, grads)]
    return [t.detach() for t in out] + list(grads)


def op_vs_reference(T, B, I, H, S, *, truncate, activation, bias=True, state=True, seed=0,
                    scale=0.9):
    options = dict(truncate=truncate, activation=activation)
    results = []
    for run in (
        lambda *a: OPS.lstm(*a, cells_per_block=S, gate_feedback=True, **options),
        lambda *a: reference_lstm(*a, cells_per_block=S, gate_feedback=True, **options),
    ):
        args = make_args(T, B, I, H, bias=bias, state=state, seed=seed, scale=scale,
                         cells_per_block=S, gate_feedback=True)
        results.append(results_and_gradients(run, args, seed + 1))
    return results


# The small-layer loop serves S = 1 (with B = 2 on precomputed input projections, with B = 9 with
# the input product folded in); "0" sends every layer to the per-step path.
@pytest.mark.parametrize("small_layer", ["0", "1"])
@pytest.mark.parametrize("H,S,B", [(4, 1, 2), (5, 1, 9), (4, 2, 3), (6, 3, 2), (6, 2, 9)])
@pytest.mark.parametrize("truncate", [True, False])
@pytest.mark.parametrize("activation", ["tanh", "paper"])
@pytest.mark.parametrize("bias,state", [(True, True), (False, False)])
def test_op_matches_reference(monkeypatch, small_layer, H, S, B, truncate, activation, bias,
                              state):
    monkeypatch.setenv("LSTM1997_SMALL_LAYER", small_layer)
    ours, reference = op_vs_reference(7, B, 4, H, S, truncate=truncate, activation=activation,
                                      bias=bias, state=state)
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_zero_gate_columns_give_the_layer_without_feedback():
    """A second reading of the definition: with the gate columns of weight_hh zero, the gates'
    outputs reach nothing, and the layer is the one without gate feedback on the middle columns."""
    S, H = 2, 4
    K = H // S
    x, w_ih, w_hh, b_ih, b_hh, h0, s0 = make_args(6, 3, 3, H, cells_per_block=S,
                                                  gate_feedback=True, requires_grad=False)
    w_hh = w_hh.clone()
    w_hh[:, :K] = 0
    w_hh[:, K + H:] = 0
    ours = OPS.lstm(x, w_ih, w_hh, b_ih, b_hh, h0, s0, cells_per_block=S, gate_feedback=True)
    plain = OPS.lstm(x, w_ih, w_hh[:, K:K + H], b_ih, b_hh, h0[:, K:K + H], s0,
                     cells_per_block=S)
    torch.testing.assert_close(ours[0], plain[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours[1][:, K:K + H], plain[1], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours[2], plain[2], rtol=1e-12, atol=1e-12)
    # and h_n's gate parts are the last step's gates
    _, _, _, _, gates = OPS._lstm_forward(x, w_ih, w_hh, b_ih, b_hh, h0, s0, cells_per_block=S,
                                          gate_feedback=True)
    torch.testing.assert_close(ours[1][:, :K], gates[-1, :, 0:H:S])
    torch.testing.assert_close(ours[1][:, K + H:], gates[-1, :, 2 * H:3 * H:S])


@pytest.mark.parametrize("S", [1, 2])
def test_gradcheck_exact(S):
    args = make_args(4, 2, 3, 2 * S, cells_per_block=S, gate_feedback=True)
    assert torch.autograd.gradcheck(
        lambda *a: OPS.lstm(*a, truncate=False, activation="paper", cells_per_block=S,
                            gate_feedback=True), args)


@pytest.mark.parametrize("S,B,H", [(1, 64, 64), (2, 64, 64), (3, 5, 6)])
def test_inference_path_matches_reference(S, B, H):
    """Without grad the op runs its inference kernel, which projects the input chunk by chunk (at
    this size the chunks hold a few steps each) and keeps no gates: the fed-back gates must still
    cross the chunks."""
    args = make_args(25, B, 5, H, cells_per_block=S, gate_feedback=True, requires_grad=False,
                     scale=0.3)
    with torch.no_grad():
        ours = OPS.lstm(*args, cells_per_block=S, gate_feedback=True)
    expected = reference_lstm(*args, cells_per_block=S, gate_feedback=True)
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("truncate", [True, False])
@pytest.mark.parametrize("S", [1, 3])
def test_chunked_equals_whole(truncate, S):
    """A sequence split into calls, each starting from the (h_n, s_n) of the one before, gives the
    outputs and the gradients of one call over the whole sequence."""
    torch.manual_seed(0)
    module = lstm1997.LSTM(3, 3 * S, truncate=truncate, cells_per_block=S, gate_feedback=True,
                           dtype=f64)
    x = torch.randn(12, 2, 3, dtype=f64)
    target = torch.randn(12, 2, 3 * S, dtype=f64)

    def loss_and_grads(pieces):
        outputs, hx = [], None
        for piece in pieces:
            output, hx = module(piece, hx)
            outputs.append(output)
        output = torch.cat(outputs)
        loss = (output - target).square().sum() + hx[0].sum() + hx[1].sum()
        return output, hx, torch.autograd.grad(loss, list(module.parameters()))

    whole = loss_and_grads([x])
    chunked = loss_and_grads(list(x.split([5, 1, 6])))
    torch.testing.assert_close(chunked[0], whole[0], rtol=1e-12, atol=1e-12)
    for a, b in zip(chunked[1], whole[1]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    for a, b in zip(chunked[2], whole[2]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("truncate", [True, False])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("S", [1, 2])
def test_packed_module_matches_per_sequence_reference(truncate, bidirectional, S):
    torch.manual_seed(0)
    I, H, layers = 3, 4, 2
    module = lstm1997.LSTM(I, H, layers, bidirectional=bidirectional, truncate=truncate,
                           activation="paper", cells_per_block=S, gate_feedback=True, dtype=f64)
    check_packed_module(module, [torch.randn(n, I, dtype=f64) for n in (5, 2, 4)])


def test_module_shapes_state_and_cell():
    H, S = 6, 3
    K = H // S
    module = lstm1997.LSTM(3, H, num_layers=2, bidirectional=True, cells_per_block=S,
                           gate_feedback=True, batch_first=True)
    assert module.recurrent_size == K + H + K
    assert module.weight_hh_l1_reverse.shape == (K + H + K, K + H + K)
    assert module.weight_ih_l1.shape == (K + H + K, 2 * H)
    assert "gate_feedback=True" in repr(module)
    x = torch.randn(2, 5, 3)
    output, (h_n, s_n) = module(x)
    assert output.shape == (2, 5, 2 * H)
    assert h_n.shape == (4, 2, K + H + K) and s_n.shape == (4, 2, H)
    # the cells' part of h_n is the last output of each direction
    input_gates, hidden, output_gates = lstm1997.recurrent_split(h_n, S)
    assert input_gates.shape == output_gates.shape == (4, 2, K)
    torch.testing.assert_close(hidden[2], output[:, -1, :H])
    torch.testing.assert_close(hidden[3], output[:, 0, H:])
    assert ((input_gates > 0) & (input_gates < 1)).all()
    # unbatched input, and hx given
    out1, (h1, s1) = module(x[0], (h_n[:, 0], s_n[:, 0]))
    out2, (h2, s2) = module(x[:1], (h_n[:, :1], s_n[:, :1]))
    torch.testing.assert_close(out1, out2[0])
    torch.testing.assert_close(h1, h2[:, 0])

    cell = lstm1997.LSTMCell(3, H, cells_per_block=S, gate_feedback=True, dtype=f64)
    assert cell.weight_hh.shape == (K + H + K, K + H + K)
    steps = torch.randn(4, 2, 3, dtype=f64)
    hx = None
    for step in steps:
        hx = cell(step, hx)
    expected = reference_lstm(steps, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh,
                              gate_feedback=True, cells_per_block=S)
    torch.testing.assert_close(hx[0], expected[1].detach())
    torch.testing.assert_close(hx[1], expected[2].detach())
    h, s = cell(steps[0, 0])  # unbatched
    assert h.shape == (K + H + K,) and s.shape == (H,)


@pytest.mark.parametrize("chunk", [1, 4])
@pytest.mark.parametrize("S", [1, 3])
def test_online_gradients_equal_truncated_backward(chunk, S):
    torch.manual_seed(0)
    T, B, I, H = 8, 2, 3, 6
    online = lstm1997.OnlineLSTM(I, H, activation="paper", cells_per_block=S, gate_feedback=True,
                                 dtype=f64)
    with torch.no_grad():
        for p in online.parameters():
            p.mul_(3)
    assert online.traces is None
    x, targets = torch.randn(T, B, I, dtype=f64), torch.randn(T, B, H, dtype=f64)
    for start in range(0, T, chunk):
        output = online(x[start:start + chunk])
        loss = (output - targets[start:start + chunk]).square().sum()
        online.backward(torch.autograd.grad(loss, output)[0])
    assert online.traces[1].shape == (B, 2 * H, online.recurrent_size)
    params = {n: p.detach().clone().requires_grad_() for n, p in online.named_parameters()}
    output, _, _ = reference_lstm(x, params["weight_ih_l0"], params["weight_hh_l0"],
                                  params["bias_ih_l0"], params["bias_hh_l0"], activation="paper",
                                  gate_feedback=True, cells_per_block=S)
    (output - targets).square().sum().backward()
    for name, p in online.named_parameters():
        torch.testing.assert_close(p.grad, params[name].grad, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("S", [1, 2])
def test_opcheck(S):
    options = {"cells_per_block": S, "gate_feedback": True}
    args = make_args(5, 3, 4, 2 * S, cells_per_block=S, gate_feedback=True)
    torch.library.opcheck(OPS.lstm.default, args, {"truncate": False, **options})
    torch.library.opcheck(OPS.lstm.default, args, options)
    plain = [a.detach() for a in args]
    torch.library.opcheck(OPS._lstm_forward.default, plain, options)
    output, h_n, s_n, squashed_state, gates = OPS._lstm_forward(*plain, **options)
    upstream = [torch.randn_like(t) for t in (output, h_n, s_n)]
    backward_args = (*upstream, plain[0], plain[1], plain[2], plain[5], output, squashed_state,
                     gates)
    for truncate in (True, False):
        torch.library.opcheck(OPS._lstm_backward.default, backward_args,
                              {"truncate": truncate, **options})
    H, R, B, I = 2 * S, plain[2].shape[1], 3, 4
    traces = (torch.zeros(B, 2 * H, I, dtype=f64), torch.rand(B, 2 * H, R, dtype=f64),
              torch.rand(B, 2 * H, dtype=f64))
    torch.library.opcheck(OPS.lstm_online_traces.default,
                          (plain[0], plain[5], output, gates, *traces), options)
    torch.library.opcheck(OPS.lstm_online_grads.default,
                          (upstream[0], plain[0], plain[1], plain[2], plain[5], output,
                           squashed_state, gates, *traces), options)


def test_torch_compile_and_export():
    torch.manual_seed(0)
    module = lstm1997.LSTM(3, 4, cells_per_block=2, gate_feedback=True, dtype=f64)
    x = torch.randn(6, 2, 3, dtype=f64)
    expected_output, (expected_h, _) = module(x)
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    output, (h_n, _) = compiled(x)
    torch.testing.assert_close(output, expected_output)
    torch.testing.assert_close(h_n, expected_h)
    exported = torch.export.export(module, (x,))
    torch.testing.assert_close(exported.module()(x)[0], expected_output)


def test_torchscript():
    torch.manual_seed(0)
    module = lstm1997.LSTM(3, 4, gate_feedback=True)
    scripted = torch.jit.script(Holder(module))
    x = torch.randn(6, 2, 3)
    output, hx = module(x)
    scripted_output, scripted_hx = scripted(x)
    torch.testing.assert_close(scripted_output, output)
    torch.testing.assert_close(scripted(x, scripted_hx)[0], module(x, hx)[0])
    cell = torch.jit.script(lstm1997.LSTMCell(3, 4, gate_feedback=True))
    assert cell(x[0])[0].shape == (2, 12)


def test_op_rejects_weight_hh_of_the_wrong_width():
    x, w_ih, w_hh, b_ih, b_hh, h0, s0 = make_args(3, 2, 3, 4, cells_per_block=2,
                                                  requires_grad=False)
    with pytest.raises(RuntimeError, match=r"weight_hh: expected shape \(K \+ H \+ K, H \+ 2K\) "
                                           r"with gate_feedback .*got \[8, 4\]"):
        OPS.lstm(x, w_ih, w_hh, cells_per_block=2, gate_feedback=True)
    # the other way round: a feedback weight without the option
    square = torch.zeros(8, 8, dtype=f64)
    with pytest.raises(RuntimeError, match="pass gate_feedback=True"):
        OPS.lstm(x, w_ih, square, cells_per_block=2)
    with pytest.raises(RuntimeError, match="multiple of cells_per_block"):
        OPS.lstm(x, torch.zeros(7, 3, dtype=f64), torch.zeros(7, 7, dtype=f64),
                 cells_per_block=2, gate_feedback=True)


def test_op_rejects_state_of_the_wrong_width():
    args = list(make_args(3, 2, 3, 4, cells_per_block=2, gate_feedback=True, requires_grad=False))
    h0 = args[5]
    args[5] = h0[:, 2:6]  # the cells' part only
    with pytest.raises(RuntimeError, match=r"h0: expected shape \[2, 8\] \(batch, K \+ H \+ K\)"):
        OPS.lstm(*args, cells_per_block=2, gate_feedback=True)
    args[5] = h0
    args[6] = torch.zeros(2, 8, dtype=f64)
    with pytest.raises(RuntimeError, match=r"s0: expected shape \[2, 4\]"):
        OPS.lstm(*args, cells_per_block=2, gate_feedback=True)


@pytest.mark.filterwarnings("ignore:from_torch_lstm")
def test_modules_reject_bad_state_and_options():
    module = lstm1997.LSTM(3, 4, cells_per_block=2, gate_feedback=True)
    x = torch.randn(5, 2, 3)
    with pytest.raises(RuntimeError, match=r"hx \(h0\): expected shape \[1, 2, 8\]"):
        module(x, (torch.zeros(1, 2, 4), torch.zeros(1, 2, 4)))
    with pytest.raises(RuntimeError, match=r"hx \(s0\): expected shape \[1, 2, 4\]"):
        module(x, (torch.zeros(1, 2, 8), torch.zeros(1, 2, 8)))
    with pytest.raises(ValueError, match=r"hx: expected a tuple of 2 tensors \(h0, s0\), got 3: "
                                         r"with gate_feedback the gate outputs are part of h"):
        module(x, (torch.zeros(1, 2, 4), torch.zeros(1, 2, 4), torch.zeros(1, 2, 4)))
    cell = lstm1997.LSTMCell(3, 4, gate_feedback=True)
    with pytest.raises(RuntimeError, match=r"hx \(h\): expected shape \[2, 12\]"):
        cell(x[0], (torch.zeros(2, 4), torch.zeros(2, 4)))
    with pytest.raises(ValueError, match=r"hx: expected a tuple of 2 tensors \(h, s\), got 1"):
        cell(x[0], (torch.zeros(2, 12),))
    for make in (lstm1997.LSTM, lstm1997.LSTMCell, lstm1997.OnlineLSTM):
        with pytest.raises(TypeError, match="gate_feedback: expected a bool"):
            make(3, 4, gate_feedback="False")
    with pytest.raises(ValueError, match="gate_feedback: expected False"):
        lstm1997.LSTM(3, 4, gate_feedback=True).to_torch_lstm()
    with pytest.raises(ValueError, match="gate_feedback: expected False"):
        lstm1997.LSTM.from_torch_lstm(torch.nn.LSTM(3, 4), gate_feedback=True)
    with pytest.raises(ValueError, match="recurrent_split: state"):
        lstm1997.recurrent_split(torch.zeros(2, 7), 2)


def test_online_ops_reject_traces_of_the_wrong_width():
    B, I, H = 2, 3, 4
    args = make_args(3, B, I, H, gate_feedback=True, requires_grad=False)
    output, _, _, _, gates = OPS._lstm_forward(*args, gate_feedback=True)
    traces = (torch.zeros(B, 2 * H, I, dtype=f64), torch.zeros(B, 2 * H, H, dtype=f64),
              torch.zeros(B, 2 * H, dtype=f64))
    with pytest.raises(RuntimeError, match=r"trace_hh: expected shape \[2, 8, 12\]"):
        OPS.lstm_online_traces(args[0], args[5], output, gates, *traces, gate_feedback=True)


@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 0.1),
                                             (torch.float16, 0.02)])
@pytest.mark.parametrize("S", [1, 2])
@pytest.mark.parametrize("truncate", [True, False])
def test_low_precision_matches_float64_reference(dtype, tolerance, S, truncate):
    """Half types compute in float32 (the cell state carried in float32): their results and
    gradients stay within their rounding of the float64 reference run on the same rounded
    arguments."""
    args = make_args(6, 3, 4, 4, cells_per_block=S, gate_feedback=True, requires_grad=False)
    ours = [a.to(dtype).requires_grad_() for a in args]
    theirs = [a.to(dtype).double().requires_grad_() for a in args]
    out = OPS.lstm(*ours, cells_per_block=S, gate_feedback=True, truncate=truncate)
    expected = reference_lstm(*theirs, cells_per_block=S, gate_feedback=True, truncate=truncate)
    sum(o.double().sum() for o in out).backward()
    sum(o.sum() for o in expected).backward()
    for a, b in zip(out, expected):
        torch.testing.assert_close(a.double(), b.detach(), rtol=tolerance, atol=tolerance)
    for a, b in zip(ours, theirs):
        reference_grad = b.grad if b.grad is not None else torch.zeros_like(b)
        torch.testing.assert_close(a.grad.double(), reference_grad, rtol=tolerance,
                                   atol=tolerance)
