"""Bad arguments to every public entry point give an exception naming the argument and what was
expected: never a crash or a wrong answer."""
import pytest
import torch
from conftest import make_args

import lstm1997

OPS = torch.ops.lstm1997
T, B, I, H = 4, 3, 5, 6


def good():
    return list(make_args(T, B, I, H, requires_grad=False))


def replace(index, value):
    args = good()
    args[index] = value
    return args


f64 = torch.float64
# (case id, op arguments, expected exception, message pattern)
FORWARD_CASES = [
    ("input 2-D", replace(0, torch.zeros(T, I, dtype=f64)), RuntimeError, r"input: expected a 3-D"),
    ("input 4-D", replace(0, torch.zeros(T, B, I, 1, dtype=f64)), RuntimeError, r"input: expected a 3-D"),
    ("input int", replace(0, torch.zeros(T, B, I, dtype=torch.int64)), TypeError, r"input: expected a float64, float32, float16 or bfloat16 tensor, got Long"),
    ("input complex", replace(0, torch.zeros(T, B, I, dtype=torch.complex64)), TypeError, r"input: expected a float64, float32, float16 or bfloat16"),
    ("input_size 0", [torch.zeros(T, B, 0, dtype=f64), torch.zeros(3 * H, 0, dtype=f64)] + good()[2:], RuntimeError, r"input: expected input_size"),
    ("weight_ih columns", replace(1, torch.zeros(3 * H, I + 1, dtype=f64)), RuntimeError, r"weight_ih: expected shape \[18, 5\]"),
    ("weight_ih rows", replace(1, torch.zeros(4 * H, I, dtype=f64)), RuntimeError, r"weight_ih: expected shape"),
    ("weight_ih 1-D", replace(1, torch.zeros(3 * H * I, dtype=f64)), RuntimeError, r"weight_ih: expected shape"),
    ("weight_ih dtype", replace(1, torch.zeros(3 * H, I)), TypeError, r"weight_ih: expected dtype Double"),
    ("weight_hh not 3H x H", replace(2, torch.zeros(4 * H, H, dtype=f64)), RuntimeError, r"weight_hh: expected shape \(3\*hidden_size, hidden_size\)"),
    ("weight_hh 3-D", replace(2, torch.zeros(3 * H, H, 1, dtype=f64)), RuntimeError, r"weight_hh: expected shape"),
    ("hidden_size 0", replace(2, torch.zeros(0, 0, dtype=f64)), RuntimeError, r"weight_hh: .*hidden_size > 0"),
    ("weight_hh dtype", replace(2, torch.zeros(3 * H, H)), TypeError, r"weight_hh: expected dtype"),
    ("bias_ih size", replace(3, torch.zeros(4 * H, dtype=f64)), RuntimeError, r"bias_ih: expected shape \[18\]"),
    ("bias_ih 2-D", replace(3, torch.zeros(1, 3 * H, dtype=f64)), RuntimeError, r"bias_ih: expected shape"),
    ("bias_hh size", replace(4, torch.zeros(3 * H + 1, dtype=f64)), RuntimeError, r"bias_hh: expected shape"),
    ("bias_hh dtype", replace(4, torch.zeros(3 * H)), TypeError, r"bias_hh: expected dtype"),
    ("h0 batch", replace(5, torch.zeros(B + 1, H, dtype=f64)), RuntimeError, r"h0: expected shape \[3, 6\] \(batch, hidden_size\)"),
    ("h0 3-D", replace(5, torch.zeros(1, B, H, dtype=f64)), RuntimeError, r"h0: expected shape"),
    ("h0 dtype", replace(5, torch.zeros(B, H)), TypeError, r"h0: expected dtype"),
    ("s0 hidden", replace(6, torch.zeros(B, H + 1, dtype=f64)), RuntimeError, r"s0: expected shape"),
    ("s0 dtype", replace(6, torch.zeros(B, H, dtype=torch.float16)), TypeError, r"s0: expected dtype"),
    ("weight_ih device", replace(1, torch.zeros(3 * H, I, dtype=f64, device="meta")), RuntimeError, r"weight_ih: expected device cpu"),
    ("h0 device", replace(5, torch.zeros(B, H, dtype=f64, device="meta")), RuntimeError, r"h0: expected device cpu"),
]


@pytest.mark.parametrize("args,exc,pattern", [c[1:] for c in FORWARD_CASES], ids=[c[0] for c in FORWARD_CASES])
@pytest.mark.parametrize("entry", ["op lstm", "op _lstm_forward", "functional", "meta"])
def test_forward_entry_points(entry, args, exc, pattern):
    if entry == "meta":  # the fake kernels that torch.compile traces with check the same way
        if "device" in pattern:
            pytest.skip("every tensor is on the meta device here")
        args = [a.to("meta") if a is not None else None for a in args]
    with pytest.raises(exc, match=pattern):
        if entry == "op _lstm_forward":
            OPS._lstm_forward(*args)
        elif entry == "functional":
            lstm1997.lstm(*args)
        else:
            OPS.lstm(*args)


@pytest.mark.parametrize("entry", ["op lstm", "op _lstm_forward", "op _lstm_backward", "functional"])
def test_unknown_activation(entry):
    args = good()
    with pytest.raises(ValueError, match=r'activation: expected "tanh" or "paper", got "relu"'):
        if entry == "op lstm":
            OPS.lstm(*args, activation="relu")
        elif entry == "op _lstm_forward":
            OPS._lstm_forward(*args, activation="relu")
        elif entry == "op _lstm_backward":
            OPS._lstm_backward(*backward_args(), activation="relu")
        else:
            lstm1997.lstm(*args, activation="relu")


def backward_args():
    x, w_ih, w_hh, b_ih, b_hh, h0, s0 = good()
    output, h_n, s_n, squashed_state, gates = OPS._lstm_forward(x, w_ih, w_hh, b_ih, b_hh, h0, s0)
    return [torch.ones_like(output), torch.ones_like(h_n), torch.ones_like(s_n), x, w_ih, w_hh, h0,
            output, squashed_state, gates]


def backward_replace(index, value):
    args = backward_args()
    args[index] = value
    return args


BACKWARD_CASES = [
    ("grad_output shape", backward_replace(0, torch.zeros(T, B, H + 1, dtype=f64)), RuntimeError, r"grad_output: expected shape \[4, 3, 6\]"),
    ("grad_output dtype", backward_replace(0, torch.zeros(T, B, H)), TypeError, r"grad_output: expected dtype"),
    ("grad_h_n shape", backward_replace(1, torch.zeros(1, B, H, dtype=f64)), RuntimeError, r"grad_h_n: expected shape \[3, 6\]"),
    ("grad_s_n shape", backward_replace(2, torch.zeros(B, 1, dtype=f64)), RuntimeError, r"grad_s_n: expected shape"),
    ("input 2-D", backward_replace(3, torch.zeros(T, I, dtype=f64)), RuntimeError, r"input: expected a 3-D"),
    ("weight_ih shape", backward_replace(4, torch.zeros(3 * H, I + 2, dtype=f64)), RuntimeError, r"weight_ih: expected shape"),
    ("weight_hh shape", backward_replace(5, torch.zeros(3 * H, H + 1, dtype=f64)), RuntimeError, r"weight_hh: expected shape"),
    ("h0 shape", backward_replace(6, torch.zeros(B, H + 1, dtype=f64)), RuntimeError, r"h0: expected shape"),
    ("output length", backward_replace(7, torch.zeros(T + 1, B, H, dtype=f64)), RuntimeError, r"output: expected shape"),
    ("squashed_state dtype", backward_replace(8, torch.zeros(T, B, H)), TypeError, r"squashed_state: expected dtype"),
    ("gates shape", backward_replace(9, torch.zeros(T, B, 4 * H, dtype=f64)), RuntimeError, r"gates: expected shape \[4, 3, 18\]"),
]


@pytest.mark.parametrize("args,exc,pattern", [c[1:] for c in BACKWARD_CASES], ids=[c[0] for c in BACKWARD_CASES])
@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("op", ["_lstm_backward", "_lstm_net_errors"])
def test_backward_op(args, exc, pattern, device, op):
    args = [a.to(device) if a is not None else None for a in args]
    with pytest.raises(exc, match=pattern):
        getattr(OPS, op)(*args)


# torch.nn.LSTM's exception types: TypeError for a value of the wrong type, ValueError for a bad
# value of the right type.
MODULE_CASES = [
    ({"input_size": 0, "hidden_size": 4}, ValueError, r"input_size: expected a positive int, got 0"),
    ({"input_size": 3, "hidden_size": -1}, ValueError,
     r"hidden_size: expected a positive int, got -1"),
    ({"input_size": 3, "hidden_size": 2.5}, TypeError,
     r"hidden_size: expected a positive int, got float 2.5"),
    ({"input_size": True, "hidden_size": 4}, TypeError, r"input_size: expected a positive int"),
    ({"input_size": 3, "hidden_size": 4, "activation": "relu"}, ValueError,
     r"activation: expected one of"),
    ({"input_size": 3, "hidden_size": 4, "batch_first": "False"}, TypeError,
     r"batch_first: expected a bool, got str 'False'"),
    ({"input_size": 3, "hidden_size": 4, "bias": 1}, TypeError, r"bias: expected a bool"),
    ({"input_size": 3, "hidden_size": 4, "bidirectional": "yes"}, TypeError,
     r"bidirectional: expected a bool"),
    ({"input_size": 3, "hidden_size": 4, "truncate": None}, TypeError, r"truncate: expected a bool"),
]


@pytest.mark.parametrize("kwargs,exc,pattern", MODULE_CASES)
def test_module_constructor(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        lstm1997.LSTM(**kwargs)


def test_module_forward():
    module = lstm1997.LSTM(I, H)
    with pytest.raises(ValueError, match=r"input: expected a 3-D .* or 2-D"):
        module(torch.zeros(T, B, I, 1))
    with pytest.raises(ValueError, match=r"input: expected a 3-D"):
        module(torch.zeros(I))
    with pytest.raises(RuntimeError, match=r"input: input.size\(-1\) must be equal to "
                                           r"input_size. Expected 5, got 4"):
        module(torch.zeros(T, B, I - 1))
    with pytest.raises(ValueError, match=r"input: expected dtype torch.float32 \(the dtype of "
                                         r"the weights\), got torch.float64"):
        module(torch.zeros(T, B, I, dtype=f64))
    state = torch.zeros(1, B, H)
    with pytest.raises(RuntimeError, match=r"hx \(h0\): expected shape \[1, 3, 6\]"):
        module(torch.zeros(T, B, I), (torch.zeros(2, B, H), state))
    with pytest.raises(RuntimeError, match=r"hx \(s0\): expected shape \[1, 3, 6\]"):
        module(torch.zeros(T, B, I), (state, torch.zeros(1, B + 1, H)))
    with pytest.raises(RuntimeError, match=r"hx \(h0\): expected shape \[1, 6\]"):
        module(torch.zeros(T, I), (state, state))
    with pytest.raises(TypeError, match=r"h0: expected dtype Float"):
        module(torch.zeros(T, B, I), (state.double(), state))


def test_to_torch_lstm_needs_tanh():
    with pytest.raises(ValueError, match=r'activation: expected "tanh"'):
        lstm1997.LSTM(3, 4, activation="paper").to_torch_lstm()


def test_from_torch_lstm_unsupported():
    with pytest.raises(ValueError, match=r"module.proj_size: expected 0, got 2"):
        lstm1997.LSTM.from_torch_lstm(torch.nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(TypeError, match=r"expected a torch.nn.LSTM, got GRU"):
        lstm1997.LSTM.from_torch_lstm(torch.nn.GRU(3, 4))
    with pytest.raises(TypeError, match=r"expected a torch.nn.LSTMCell, got LSTM"):
        lstm1997.LSTMCell.from_torch_lstm_cell(torch.nn.LSTM(3, 4))


def packed_args(batch_sizes, with_h0=True):
    x, w_ih, w_hh, b_ih, b_hh, h0, s0 = good()
    rows = x.reshape(T * B, I)
    if not with_h0:
        h0 = s0 = None
    return [rows, w_ih, w_hh, b_ih, b_hh, h0, s0], torch.tensor(batch_sizes)


# Packed input: T*B = 12 rows, batch 3.
PACKED_CASES = [
    ("increasing", [1, 2, 3, 3, 3], r"batch_sizes: expected batch_sizes\[0\] == 3 \(the rows of h0\), got 1"),
    ("zero", [3, 3, 3, 3, 0], r"batch_sizes: expected positive, non-increasing values .* got 0 at step 4"),
    ("growing later", [3, 2, 3, 2, 2], r"batch_sizes: expected positive, non-increasing values .* got 3 at step 2"),
    ("sum too small", [3, 3, 3, 2], r"batch_sizes: expected values summing to 12 \(the rows of input\), got 11"),
    ("sum too large", [3, 3, 3, 3, 1], r"batch_sizes: expected values summing to 12 \(the rows of input\), got 13"),
    ("float", [3.0, 3.0, 3.0, 3.0], r"batch_sizes: expected a 1-D int64 CPU tensor .* got a 1-D Float tensor"),
    ("2-D", [[3, 3], [3, 3]], r"batch_sizes: expected a 1-D int64 CPU tensor .* got a 2-D Long tensor"),
]


@pytest.mark.parametrize("sizes,pattern", [c[1:] for c in PACKED_CASES], ids=[c[0] for c in PACKED_CASES])
@pytest.mark.parametrize("entry", ["op lstm", "op _lstm_forward", "functional"])
def test_packed_batch_sizes(entry, sizes, pattern):
    args, batch_sizes = packed_args(sizes)
    with pytest.raises(RuntimeError, match=pattern):
        if entry == "op lstm":
            OPS.lstm(*args, batch_sizes=batch_sizes)
        elif entry == "op _lstm_forward":
            OPS._lstm_forward(*args, batch_sizes=batch_sizes)
        else:
            lstm1997.lstm(*args, batch_sizes=batch_sizes)


def test_packed_needs_initial_state():
    args, batch_sizes = packed_args([3, 3, 3, 3], with_h0=False)
    with pytest.raises(RuntimeError, match=r"h0: expected a tensor of shape \(batch, hidden_size\) with batch_sizes \(packed input\), got None$"):
        OPS.lstm(*args, batch_sizes=batch_sizes)
    with pytest.raises(RuntimeError, match=r"input: expected a 2-D tensor \(packed rows, input_size\) with batch_sizes"):
        OPS.lstm(good()[0], *args[1:], batch_sizes=batch_sizes)


MODULE_OPTION_CASES = [
    (lstm1997.LSTM, {"dropout": -0.1}, r"LSTM: dropout: expected a probability in \[0, 1\], got -0.1"),
    (lstm1997.LSTM, {"dropout": 1.5}, r"LSTM: dropout: expected a probability in \[0, 1\], got 1.5"),
    (lstm1997.LSTM, {"dropout": "0.1"}, r"LSTM: dropout: expected a probability in \[0, 1\], got '0.1'"),
    (lstm1997.LSTM, {"num_layers": 0}, r"LSTM: num_layers: expected a positive int, got 0"),
    (lstm1997.LSTM, {"hidden_size": 0}, r"LSTM: hidden_size: expected a positive int, got 0"),
    (lstm1997.LSTMCell, {"input_size": 0}, r"LSTMCell: input_size: expected a positive int, got 0"),
    (lstm1997.LSTMCell, {"hidden_size": -2}, r"LSTMCell: hidden_size: expected a positive int, got -2"),
]


@pytest.mark.parametrize("cls,kwargs,pattern", MODULE_OPTION_CASES,
                         ids=[f"{c[0].__name__} {c[1]}" for c in MODULE_OPTION_CASES])
def test_module_options(cls, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        cls(**{"input_size": 3, "hidden_size": 4, **kwargs})
    # a value of the wrong type: TypeError, as torch.nn.LSTM raises
    with pytest.raises(TypeError, match=r"LSTM: num_layers: expected a positive int, got float 2.0"):
        lstm1997.LSTM(3, 4, num_layers=2.0)


def test_modules_dtype_and_device_mix():
    module, cell = lstm1997.LSTM(I, H), lstm1997.LSTMCell(I, H)
    state = torch.zeros(1, B, H)
    with pytest.raises(RuntimeError, match=r"weight_ih: expected device meta \(the device of input\), got cpu"):
        module(torch.zeros(T, B, I, device="meta"))
    with pytest.raises(RuntimeError, match=r"h0: expected device cpu \(the device of input\), got meta"):
        module(torch.zeros(T, B, I), (state.to("meta"), state))
    with pytest.raises(TypeError, match=r"s0: expected dtype Float \(the dtype of input\), got Double"):
        module(torch.zeros(T, B, I), (state, state.double()))
    # torch.nn.LSTMCell raises RuntimeError for an input of another dtype than its weights
    with pytest.raises(RuntimeError, match=r"LSTMCell: input: expected dtype torch.float32 \(the "
                                           r"dtype of the weights\), got torch.float64"):
        cell(torch.zeros(B, I, dtype=f64))
    with pytest.raises(RuntimeError, match=r"weight_ih: expected device meta"):
        cell(torch.zeros(B, I, device="meta"))
    with pytest.raises(TypeError, match=r"s0: expected dtype Float"):
        cell(torch.zeros(B, I), (state[0], state[0].double()))
