"""Conversion between lstm1997's modules and torch.nn.LSTM / torch.nn.LSTMCell.

torch.nn.LSTM's gate rows are (input gate, forget gate, cell input, output gate); ours are the same
without the forget gate. A torch.nn.LSTM whose forget weights are 0 and whose forget bias is so
large that sigmoid rounds to exactly 1.0 computes the 1997 cell (with g = h = tanh) exactly.

The state-dict functions work for every configuration (layers, directions, biases, cells): each
key names one weight or bias; only its rows change.
"""
import re
import warnings

import torch
from torch import nn

# sigmoid(1e4) is exactly 1.0 in float64, float32, bfloat16 (exp(-1e4) underflows to 0), and
# 1e4 is representable in float16.
PINNED_FORGET_BIAS = 1e4

_KEY = re.compile(r"^(?P<kind>weight|bias)_(?P<side>ih|hh)(?P<suffix>(_l\d+)?(_reverse)?)$")


def _split_torch(tensor):
    """(input gate, forget gate, cell input, output gate) rows of a torch.nn.LSTM tensor."""
    return tensor.chunk(4, dim=0)


def state_dict_to_torch(state_dict):
    """A torch.nn.LSTM / LSTMCell state dict (bias=True, forget gates pinned open) computing the
    same function as the given lstm1997 state dict. Missing biases become zero biases, since a
    forget gate cannot be pinned open without one."""
    result = {}
    for key, tensor in state_dict.items():
        match = _KEY.match(key.rsplit(".", 1)[-1])
        if match is None:
            result[key] = tensor
            continue
        input_gate, cell_input, output_gate = tensor.chunk(3, dim=0)
        forget = torch.zeros_like(input_gate)
        result[key] = torch.cat([input_gate, forget, cell_input, output_gate])
        if match["kind"] == "weight" and match["side"] == "ih":
            prefix = key[: len(key) - len(match.group(0))]
            for side in ("ih", "hh"):
                bias_key = f"{prefix}bias_{side}{match['suffix']}"
                if bias_key not in state_dict:
                    result[bias_key] = tensor.new_zeros(4 * input_gate.shape[0])
    for key, tensor in result.items():
        match = _KEY.match(key.rsplit(".", 1)[-1])
        if match is not None and match["kind"] == "bias" and match["side"] == "ih":
            rows = tensor.shape[0] // 4
            tensor = tensor.clone()
            tensor[rows : 2 * rows] = PINNED_FORGET_BIAS
            result[key] = tensor
    return result


def state_dict_from_torch(state_dict):
    """An lstm1997 state dict from a torch.nn.LSTM / LSTMCell one: the forget-gate rows dropped."""
    result = {}
    for key, tensor in state_dict.items():
        if _KEY.match(key.rsplit(".", 1)[-1]) is None:
            result[key] = tensor
            continue
        input_gate, _, cell_input, output_gate = _split_torch(tensor)
        result[key] = torch.cat([input_gate, cell_input, output_gate])
    return result


def forget_gates_pinned(state_dict):
    """True when every forget gate in a torch.nn.LSTM / LSTMCell state dict is exactly 1.0 for every
    input: zero forget weights and sigmoid(bias_ih + bias_hh) == 1 in the tensors' dtype."""
    layers = set()  # suffixes (_l0, _l1_reverse, ...) of every layer with weights
    forget_bias = {}  # suffix -> summed forget-gate biases
    for key, tensor in state_dict.items():
        match = _KEY.match(key.rsplit(".", 1)[-1])
        if match is None:
            continue
        forget = _split_torch(tensor)[1]
        if match["kind"] == "weight":
            layers.add(match["suffix"])
            if forget.any():
                return False
        else:
            forget_bias[match["suffix"]] = forget_bias.get(match["suffix"], 0) + forget
    if set(forget_bias) != layers:
        return False  # a layer without biases: its forget gate is sigmoid(0) = 0.5
    return all(bool((torch.sigmoid(b.double()).to(b.dtype) == 1).all()) for b in forget_bias.values())


def _require_torch_layout(module, what):
    """The parameters of ``module`` have torch.nn's layout (with the forget rows removed)."""
    if module.cells_per_block != 1:
        raise ValueError(f"{what}: cells_per_block: expected 1 (torch.nn has no memory cell "
                         f"blocks), got {module.cells_per_block}")
    if module.gate_feedback:
        raise ValueError(f"{what}: gate_feedback: expected False (in torch.nn the gates see only "
                         f"the cell outputs of t-1), got True")


def _require_torch_equivalent(module, what):
    _require_torch_layout(module, what)
    if module.activation != "tanh":
        raise ValueError(
            f"{what}: activation: expected \"tanh\" (torch.nn has no other squashing functions), "
            f"got \"{module.activation}\""
        )


def _factory(module):
    weight = next(module.parameters())
    return {"device": weight.device, "dtype": weight.dtype}


def to_torch_lstm(module):
    """A torch.nn.LSTM computing the same function as an lstm1997.LSTM (activation "tanh" only).
    Its forget gates are pinned open; it always has biases."""
    _require_torch_equivalent(module, "to_torch_lstm")
    result = nn.LSTM(
        module.input_size, module.hidden_size, module.num_layers, bias=True,
        batch_first=module.batch_first, dropout=module.dropout, bidirectional=module.bidirectional,
        **_factory(module),
    )
    result.load_state_dict(state_dict_to_torch(module.state_dict()))
    return result.train(module.training)  # the same mode: dropout acts alike


def to_torch_lstm_cell(module):
    """A torch.nn.LSTMCell computing the same step as an lstm1997.LSTMCell ("tanh" only)."""
    _require_torch_equivalent(module, "to_torch_lstm_cell")
    result = nn.LSTMCell(module.input_size, module.hidden_size, bias=True, **_factory(module))
    result.load_state_dict(state_dict_to_torch(module.state_dict()))
    return result.train(module.training)


def _warn_unless_pinned(torch_module, what):
    if not forget_gates_pinned(torch_module.state_dict()):
        warnings.warn(
            f"{what}: the forget gates of the {type(torch_module).__name__} are dropped; the "
            "converted module computes a different function unless they were saturated open",
            stacklevel=4,
        )


def from_torch_lstm(cls, torch_lstm, **options):
    """Builds ``cls`` (lstm1997.LSTM) from a torch.nn.LSTM of any configuration but proj_size."""
    if not isinstance(torch_lstm, nn.LSTM):
        raise TypeError(f"from_torch_lstm: module: expected a torch.nn.LSTM, got {type(torch_lstm).__name__}")
    if torch_lstm.proj_size != 0:
        raise ValueError(
            f"from_torch_lstm: module.proj_size: expected 0, got {torch_lstm.proj_size}: "
            "projections are not supported"
        )
    _warn_unless_pinned(torch_lstm, "from_torch_lstm")
    result = cls(
        torch_lstm.input_size, torch_lstm.hidden_size, torch_lstm.num_layers, bias=torch_lstm.bias,
        batch_first=torch_lstm.batch_first, dropout=torch_lstm.dropout,
        bidirectional=torch_lstm.bidirectional, **_factory(torch_lstm), **options,
    )
    _require_torch_layout(result, "from_torch_lstm")
    result.load_state_dict(state_dict_from_torch(torch_lstm.state_dict()))
    return result.train(torch_lstm.training)


def from_torch_lstm_cell(cls, torch_cell, **options):
    """Builds ``cls`` (lstm1997.LSTMCell) from a torch.nn.LSTMCell."""
    if not isinstance(torch_cell, nn.LSTMCell):
        raise TypeError(
            f"from_torch_lstm_cell: module: expected a torch.nn.LSTMCell, got {type(torch_cell).__name__}"
        )
    _warn_unless_pinned(torch_cell, "from_torch_lstm_cell")
    result = cls(torch_cell.input_size, torch_cell.hidden_size, bias=torch_cell.bias,
                 **_factory(torch_cell), **options)
    _require_torch_layout(result, "from_torch_lstm_cell")
    result.load_state_dict(state_dict_from_torch(torch_cell.state_dict()))
    return result.train(torch_cell.training)
