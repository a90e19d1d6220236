"""Conversion between lstm1997.LSTM and torch.nn.LSTM.

torch.nn.LSTM's gate rows are (input gate, forget gate, cell input, output gate); ours are the same
without the forget gate. A torch.nn.LSTM with forget weights 0 and a forget bias so large that
sigmoid rounds to exactly 1.0 computes the 1997 cell (with g = h = tanh) exactly.
"""
import warnings

import torch
from torch import nn

# sigmoid(1e4) is exactly 1.0 in float32 and float64: exp(-1e4) underflows to 0.
PINNED_FORGET_BIAS = 1e4

# Row blocks of torch.nn.LSTM's 4H axis that hold our (input gate, cell input, output gate).
_TORCH_BLOCKS = (0, 2, 3)
_TORCH_FORGET_BLOCK = 1


def _torch_rows(tensor, hidden_size, blocks):
    return torch.cat([tensor[b * hidden_size : (b + 1) * hidden_size] for b in blocks])


def to_torch_lstm(module):
    """A torch.nn.LSTM computing the same function as ``module`` (activation "tanh" only).

    The forget gate is pinned open: zero weights and a bias of PINNED_FORGET_BIAS. It always has
    biases, since without one the forget gate cannot be pinned; ours are copied, or zero.
    """
    if module.activation != "tanh":
        raise ValueError(
            "to_torch_lstm: activation: expected \"tanh\" (torch.nn.LSTM has no other squashing "
            f"functions), got \"{module.activation}\""
        )
    H = module.hidden_size
    weight = module.weight_ih_l0
    result = nn.LSTM(module.input_size, H, bias=True, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            ours = getattr(module, name)
            theirs = getattr(result, name)
            theirs.zero_()
            if ours is not None:
                for k, block in enumerate(_TORCH_BLOCKS):
                    theirs[block * H : (block + 1) * H].copy_(ours[k * H : (k + 1) * H])
        result.bias_ih_l0[_TORCH_FORGET_BLOCK * H : (_TORCH_FORGET_BLOCK + 1) * H] = PINNED_FORGET_BIAS
    return result


def _forget_gate_pinned(torch_lstm):
    """True when the forget gate of every unit is exactly 1.0 for every input."""
    H = torch_lstm.hidden_size
    rows = slice(_TORCH_FORGET_BLOCK * H, (_TORCH_FORGET_BLOCK + 1) * H)
    if torch_lstm.weight_ih_l0[rows].any() or torch_lstm.weight_hh_l0[rows].any():
        return False
    if not torch_lstm.bias:
        return False
    forget_bias = torch_lstm.bias_ih_l0[rows] + torch_lstm.bias_hh_l0[rows]
    return bool((torch.sigmoid(forget_bias) == 1).all())


def from_torch_lstm(cls, torch_lstm, **options):
    """Builds ``cls`` (lstm1997.LSTM) from a single-layer, unidirectional torch.nn.LSTM.

    The forget-gate rows are dropped. Unless that gate was pinned open, the result computes a
    different function, and a warning says so.
    """
    if not isinstance(torch_lstm, nn.LSTM):
        raise TypeError(f"from_torch_lstm: module: expected a torch.nn.LSTM, got {type(torch_lstm).__name__}")
    unsupported = {
        "num_layers": (torch_lstm.num_layers, 1),
        "bidirectional": (torch_lstm.bidirectional, False),
        "proj_size": (torch_lstm.proj_size, 0),
        "batch_first": (torch_lstm.batch_first, False),
    }
    for name, (value, supported) in unsupported.items():
        if value != supported:
            raise ValueError(f"from_torch_lstm: module.{name}: expected {supported}, got {value}")
    if not _forget_gate_pinned(torch_lstm):
        warnings.warn(
            "from_torch_lstm: the forget gate of the torch.nn.LSTM is dropped; the converted "
            "module computes a different function unless that gate was saturated open",
            stacklevel=3,
        )
    H = torch_lstm.hidden_size
    weight = torch_lstm.weight_ih_l0
    result = cls(
        torch_lstm.input_size, H, bias=torch_lstm.bias, device=weight.device, dtype=weight.dtype,
        **options,
    )
    with torch.no_grad():
        for name, ours in result.named_parameters():
            ours.copy_(_torch_rows(getattr(torch_lstm, name), H, _TORCH_BLOCKS))
    return result
