"""Independent references for the 1997 cell, written in plain PyTorch.

Nothing here calls lstm1997: the tests compare the op against these.
"""
import torch
from torch import nn

# g, h in the paper's own sigmoid form (the op uses the equivalent scaled tanh).
SQUASHERS = {
    "tanh": (torch.tanh, torch.tanh),
    "paper": (lambda x: 4 * torch.sigmoid(x) - 2, lambda x: 2 * torch.sigmoid(x) - 1),
}


def reference_lstm(input, weight_ih, weight_hh, bias_ih=None, bias_hh=None, h0=None, s0=None,
                   truncate=True, activation="tanh"):
    """The cell as a Python loop. With ``truncate``, h_{t-1} is detached where it enters the
    recurrent product: autograd through this loop is then the paper's truncated gradient."""
    g, h = SQUASHERS[activation]
    T, B, _ = input.shape
    H = weight_hh.shape[1]
    hidden = h0 if h0 is not None else input.new_zeros(B, H)
    state = s0 if s0 is not None else input.new_zeros(B, H)
    outputs = []
    for t in range(T):
        recurrent = hidden.detach() if truncate else hidden
        net = input[t] @ weight_ih.T + recurrent @ weight_hh.T
        if bias_ih is not None:
            net = net + bias_ih
        if bias_hh is not None:
            net = net + bias_hh
        a, z, c = net.chunk(3, dim=1)
        state = state + torch.sigmoid(a) * g(z)
        hidden = torch.sigmoid(c) * h(state)
        outputs.append(hidden)
    output = torch.stack(outputs) if outputs else input.new_zeros(0, B, H)
    return output, hidden, state


def pinned_torch_lstm(weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """A torch.nn.LSTM whose forget gate is pinned open (weights 0, bias 1e4) and whose other rows
    are the given (input gate, cell input, output gate) rows."""
    H = weight_hh.shape[1]
    I = weight_ih.shape[1]
    module = nn.LSTM(I, H, dtype=weight_ih.dtype)

    def with_forget_rows(rows, forget_value):
        i, g, o = rows.detach().chunk(3, dim=0)
        return torch.cat([i, torch.full_like(i, forget_value), g, o])

    zeros = weight_ih.new_zeros(3 * H)
    with torch.no_grad():
        module.weight_ih_l0.copy_(with_forget_rows(weight_ih, 0.0))
        module.weight_hh_l0.copy_(with_forget_rows(weight_hh, 0.0))
        module.bias_ih_l0.copy_(with_forget_rows(bias_ih if bias_ih is not None else zeros, 1e4))
        module.bias_hh_l0.copy_(with_forget_rows(bias_hh if bias_hh is not None else zeros, 0.0))
    return module


def drop_forget_rows(tensor):
    """torch.nn.LSTM's (i, f, g, o) rows -> the 1997 cell's (i, g, o) rows."""
    i, _, g, o = tensor.chunk(4, dim=0)
    return torch.cat([i, g, o])
