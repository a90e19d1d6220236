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
                   truncate=True, activation="tanh", gate_feedback=False, cells_per_block=None):
    """The cell as a Python loop. With ``truncate``, the whole recurrent input is detached where it
    enters the recurrent product: autograd through this loop is then the paper's truncated
    gradient. Memory cell blocks follow from the weights' shape without gate feedback: K + H + K
    rows are K input gates, H cell inputs and K output gates, each gate shared by H / K
    consecutive cells (K = H: plain cells). With ``gate_feedback`` (the paper's network) the
    recurrent input is every hidden unit's output of t-1, r = [input gates | h | output gates],
    ``weight_hh`` is square and ``cells_per_block`` must be given; h0 and the returned h_n are r.
    """
    g, h = SQUASHERS[activation]
    T, B, _ = input.shape
    G = weight_hh.shape[0]
    if gate_feedback:
        S = cells_per_block or 1
        K = G // (S + 2)
        H = K * S
    else:
        H = weight_hh.shape[1]
        K = (G - H) // 2
        S = H // K
    recurrent = h0 if h0 is not None else input.new_zeros(B, weight_hh.shape[1])
    state = s0 if s0 is not None else input.new_zeros(B, H)
    outputs = []
    for t in range(T):
        previous = recurrent.detach() if truncate else recurrent
        net = input[t] @ weight_ih.T + previous @ weight_hh.T
        if bias_ih is not None:
            net = net + bias_ih
        if bias_hh is not None:
            net = net + bias_hh
        a, z, c = net.split([K, H, K], dim=1)
        input_gate, output_gate = torch.sigmoid(a), torch.sigmoid(c)
        state = state + input_gate.repeat_interleave(S, dim=1) * g(z)
        hidden = output_gate.repeat_interleave(S, dim=1) * h(state)
        outputs.append(hidden)
        recurrent = torch.cat([input_gate, hidden, output_gate], 1) if gate_feedback else hidden
    output = torch.stack(outputs) if outputs else input.new_zeros(0, B, H)
    return output, recurrent, state


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


def reference_stack(sequences, params, num_layers, bidirectional, h0=None, s0=None,
                    truncate=True, activation="tanh", gate_feedback=False, cells_per_block=None):
    """A stacked (and optionally bidirectional) 1997 LSTM run on each sequence separately.

    sequences: list of (length_b, I) tensors; params: dict of lstm1997.LSTM parameter names to
    tensors; h0, s0: (num_layers * directions, B, H) or None. Returns (list of (length_b, D*H)
    outputs, h_n, s_n). No padding or packing: every sequence runs alone over its own length, and
    the reverse direction simply runs over the flipped sequence.
    """
    directions = 2 if bidirectional else 1
    outputs, final_h, final_s = [], [], []
    for b, sequence in enumerate(sequences):
        layer_input = sequence
        h_b, s_b = [], []
        for layer in range(num_layers):
            direction_outputs = []
            for direction in range(directions):
                k = layer * directions + direction
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                x = layer_input.flip(0) if direction else layer_input
                out, h, s = reference_lstm(
                    x.unsqueeze(1), params["weight_ih" + suffix], params["weight_hh" + suffix],
                    params.get("bias_ih" + suffix), params.get("bias_hh" + suffix),
                    None if h0 is None else h0[k, b : b + 1],
                    None if s0 is None else s0[k, b : b + 1],
                    truncate=truncate, activation=activation, gate_feedback=gate_feedback,
                    cells_per_block=cells_per_block,
                )
                out = out[:, 0]
                direction_outputs.append(out.flip(0) if direction else out)
                h_b.append(h[0])
                s_b.append(s[0])
            layer_input = torch.cat(direction_outputs, dim=1)
        outputs.append(layer_input)
        final_h.append(torch.stack(h_b))
        final_s.append(torch.stack(s_b))
    return outputs, torch.stack(final_h, dim=1), torch.stack(final_s, dim=1)


def pinned_torch_like(module):
    """A torch.nn.LSTM or torch.nn.LSTMCell with the configuration and (i, g, o) rows of an
    lstm1997 module and forget gates pinned open (weights 0, bias_ih 1e4)."""
    if hasattr(module, "num_layers"):
        result = nn.LSTM(module.input_size, module.hidden_size, module.num_layers, bias=True,
                         batch_first=module.batch_first, bidirectional=module.bidirectional,
                         dtype=next(module.parameters()).dtype)
    else:
        result = nn.LSTMCell(module.input_size, module.hidden_size, bias=True,
                             dtype=next(module.parameters()).dtype)
    ours = dict(module.named_parameters())
    with torch.no_grad():
        for name, theirs in result.named_parameters():
            rows = theirs.shape[0] // 4
            i, f, g, o = theirs.split(rows)
            source = ours.get(name)
            if source is None:  # no biases in ours: zero, with the forget rows pinned below
                theirs.zero_()
            else:
                si, sg, so = source.detach().split(rows)
                i.copy_(si), g.copy_(sg), o.copy_(so)
                f.zero_()
            if name.startswith("bias_ih"):
                f.fill_(1e4)
    return result
