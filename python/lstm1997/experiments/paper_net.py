"""The paper's network and its training recipes (Hochreiter & Schmidhuber 1997, section 5).

The network: one fully recurrent layer of memory cells in which every cell and gate sees the
current inputs and the outputs at t-1 of all cells *and all gate units* (the op's gate_feedback:
the paper says so in section 4, in Figure 2's caption and in every experiment's set-up, and its
weight counts fit only this: 264 weights for exp 1's 4x1 net), logistic output units fed by the
cells only, squashers g and h of the paper (activation="paper"), the paper's truncated gradient
(which cuts every recurrent connection, the gates' included), weights uniform in [-r, r] and the
per-experiment gate biases. Activations reset to zero for every sequence. `weight_count()` counts
the paper's weights (the trainable parameters, less the bias rows the paper's net does not have);
gate_feedback=False gives the net without the gate connections, for comparison.

Readings (stated in RESULTS.md too):
- Loss per target: 1/2 sum (target - output)^2, plain gradient steps of size alpha.
- Memory cell blocks: `blocks` x `cells_per_block` cells; the S cells of a block share its input
  and output gate (the op's cells_per_block), and the per-block gate biases apply to those gates.

Recipes: "online" updates every weight after every step that has a target (OnlineLSTM: the
truncated gradient computed forward in time, the paper's way); "sequence" updates once per
sequence with the truncated backward (lstm1997.LSTM). Baselines "lstm" (torch.nn.LSTM, with forget
gate) and "rnn" (torch.nn.RNN, tanh) train per sequence with BPTT.
"""
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..modules import LSTM
from ..online import OnlineLSTM

MODELS = ("lstm1997", "lstm", "rnn")
RECIPES = ("online", "sequence")


class PaperNet(nn.Module):
    def __init__(self, input_size: int, output_size: int, blocks: int, cells_per_block: int = 1, *,
                 init_range: float, input_gate_bias: Optional[Sequence[Optional[float]]] = None,
                 output_gate_bias: Optional[Sequence[Optional[float]]] = None,
                 all_biases: bool = False, output_bias: Optional[bool] = None,
                 gate_feedback: bool = True, model: str = "lstm1997", seed: int = 0) -> None:
        """`blocks` x `cells_per_block` memory cells; weights uniform in [-init_range,
        init_range]. Biases: the given per-block input- and output-gate biases (None: drawn like
        the weights; the other bias rows held at 0), or with `all_biases` a learned bias on every
        cell and gate, those not given drawn like the weights. The output units have a bias with
        `output_bias` (default: `all_biases`, "biases on all non-input units")."""
        super().__init__()
        if model not in MODELS:
            raise ValueError(f"PaperNet: model: expected one of {MODELS}, got {model!r}")
        self.model, self.hidden_size = model, blocks * cells_per_block
        self.cells_per_block = cells_per_block
        self.gate_feedback = gate_feedback and model == "lstm1997"
        output_bias = all_biases if output_bias is None else output_bias
        H, K = self.hidden_size, blocks
        generator = torch.Generator().manual_seed(seed)
        has_bias = input_gate_bias is not None or output_gate_bias is not None or all_biases
        if model == "lstm1997":
            self.cells = LSTM(input_size, H, bias=has_bias, activation="paper",
                              cells_per_block=cells_per_block, gate_feedback=self.gate_feedback)
        elif model == "lstm":
            self.cells = nn.LSTM(input_size, H)
        else:
            self.cells = nn.RNN(input_size, H)
        self.readout = nn.Linear(H, output_size, bias=output_bias and model == "lstm1997")
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_((torch.rand(parameter.shape, generator=generator) * 2 - 1) * init_range)
        self.bias_mask: Optional[Tensor] = None
        if model == "lstm1997" and has_bias:
            # One learned bias per row (bias_hh held at zero) and only the rows the paper has.
            # Rows: K input gates, H cell inputs, K output gates (one gate per block).
            biases = self.cells.bias_ih_l0.detach().clone()  # drawn like the weights
            mask = torch.full((H + 2 * K,), 1.0 if all_biases else 0.0)
            for start, rows in ((0, input_gate_bias), (K + H, output_gate_bias)):
                if rows is not None:
                    if len(rows) != K:
                        raise ValueError(f"PaperNet: gate biases: expected one per block ({K}), "
                                         f"got {list(rows)}")
                    for k, value in enumerate(rows):
                        if value is not None:
                            biases[start + k] = value
                    mask[start:start + K] = 1
            biases.mul_(mask)
            self.bias_mask = mask
            with torch.no_grad():
                self.cells.bias_ih_l0.copy_(biases)
                self.cells.bias_hh_l0.zero_()
            self.cells.bias_hh_l0.requires_grad_(False)
        self.online: Optional[OnlineLSTM] = None

    def weight_count(self) -> int:
        """The paper's weights: the trainable parameters, less the bias rows held at zero."""
        count = sum(p.numel() for p in self.trainable())
        if self.bias_mask is not None:
            count -= int((self.bias_mask == 0).sum())
        return count

    def enforce_structure(self) -> None:
        """Bias rows the paper's net does not have stay zero after every update."""
        if self.bias_mask is not None:
            with torch.no_grad():
                self.cells.bias_ih_l0.mul_(self.bias_mask)

    def forward(self, inputs: Tensor) -> Tensor:
        """inputs (T, B, I) -> outputs (T, B, O) in (0, 1)."""
        hidden, _ = self.cells(inputs)
        return torch.sigmoid(self.readout(hidden))

    def online_layer(self) -> OnlineLSTM:
        """An OnlineLSTM sharing this net's cell parameters (created once)."""
        if self.model != "lstm1997":
            raise ValueError(f"PaperNet: the online recipe needs model 'lstm1997', got {self.model!r}")
        if self.online is None:
            online = OnlineLSTM(self.cells.input_size, self.hidden_size, bias=self.cells.bias,
                                activation="paper", cells_per_block=self.cells_per_block,
                                gate_feedback=self.gate_feedback)
            for name, parameter in self.cells.named_parameters():
                setattr(online, name, parameter)
            self.online = online
        return self.online

    def trainable(self) -> List[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]


def next_symbol_task(indices: Tensor, num_symbols: int) -> Tuple[Tensor, Tensor, Tensor]:
    """A symbol sequence as a next-symbol prediction task: (inputs (T, 1, S), targets (T, 1, S),
    mask (T,)): one-hot symbols, each step's target the symbol that follows, no target at the
    last step."""
    one_hot = torch.nn.functional.one_hot(indices, num_symbols).float().unsqueeze(1)
    targets = torch.zeros_like(one_hot)
    targets[:-1] = one_hot[1:]
    mask = torch.ones(len(indices), dtype=torch.bool)
    mask[-1] = False
    return one_hot, targets, mask


def squared_error(outputs: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """1/2 sum of squared errors over the steps that have targets (mask (T,) of bools)."""
    return 0.5 * ((outputs - targets).square().sum(-1).sum(-1) * mask).sum()


def output_unit_errors(outputs: Tensor, targets: Tensor, mask) -> Tensor:
    """The error of each logistic output unit's net input under the loss 1/2 (output - target)^2:
    (y - target) y (1 - y), zero where `mask` (bools over the steps, or True) has no target."""
    error = (outputs - targets) * outputs * (1 - outputs)
    return error if mask is True else error * mask.reshape(-1, *[1] * (error.dim() - 1))


def train_sequence(net: PaperNet, inputs: Tensor, targets: Tensor, mask: Tensor,
                   alpha: float) -> Tensor:
    """One sequence (inputs (T, 1, I), targets (T, 1, O)), one gradient step at its end. Returns
    the outputs the net gave during the sequence (before the step).

    The output units' gradient is written out (the delta rule, as in train_online); autograd
    runs only through the memory cells (or the baselines' torch.nn layers), from the error that
    reaches their outputs: a loss and readout graph per sequence would cost more than the
    layer's own backward. Tests compare it with autograd's gradient of the whole net. A net of
    another kind (exp 2a's) gets autograd's gradient of its whole forward."""
    if not isinstance(net, PaperNet):
        outputs = net(inputs)
        parameters = net.trainable()
        grads = torch.autograd.grad(squared_error(outputs, targets, mask), parameters)
        with torch.no_grad():
            for parameter, grad in zip(parameters, grads):
                parameter.sub_(grad, alpha=alpha)
        net.enforce_structure()
        return outputs.detach()
    if net.model == "lstm1997":
        return train_cells_sequence(net, inputs, targets, mask, alpha)
    hidden, _ = net.cells(inputs)
    weight, bias = net.readout.weight, net.readout.bias
    with torch.no_grad():
        outputs = torch.sigmoid(net.readout(hidden))
        error = output_unit_errors(outputs, targets, mask)
        grad_hidden = error @ weight
    layer_parameters = [p for p in net.cells.parameters() if p.requires_grad]
    grads = torch.autograd.grad(hidden, layer_parameters, grad_hidden)
    update(net, error, hidden, layer_parameters, grads, alpha)
    return outputs


def update(net: PaperNet, error: Tensor, hidden: Tensor, layer_parameters, grads,
           alpha: float) -> None:
    """The sequence recipe's gradient step: the output units' (the delta rule: `error`, their net
    inputs' errors, times the `hidden` outputs they saw) and the layer's (`grads`)."""
    weight, bias = net.readout.weight, net.readout.bias
    with torch.no_grad():
        error, seen = error.reshape(-1, error.shape[-1]), hidden.reshape(-1, hidden.shape[-1])
        parameters, gradients = [weight, *layer_parameters], [error.t() @ seen, *grads]
        if bias is not None:
            parameters.append(bias)
            gradients.append(error.sum(0))
        # One call for every update (each parameter - alpha * gradient, as sub_ computes it).
        torch._foreach_add_(parameters, gradients, alpha=-alpha)
    net.enforce_structure()


def cells_forward(net: PaperNet, inputs: Tensor) -> Tuple[Tensor, Tuple[Tensor, ...]]:
    """The 1997 cells' forward op on one sequence: (hidden (T, 1, H), what cells_gradients
    needs). With cells_gradients, the two kernels that lstm1997::lstm's autograd runs, with the
    same arguments: the same results bit for bit (tested), without the module call and the
    autograd graph, which at the paper's sizes cost about as much as the kernels
    (benchmarks/sequence_costs.py)."""
    cells = net.cells
    bias = (cells.bias_ih_l0, cells.bias_hh_l0) if cells.bias else (None, None)
    with torch.no_grad():
        hidden, h_n, s_n, squashed_state, gates = torch.ops.lstm1997._lstm_forward(
            inputs, cells.weight_ih_l0, cells.weight_hh_l0, *bias, None, None,
            activation=cells.activation, cells_per_block=cells.cells_per_block,
            gate_feedback=cells.gate_feedback)
    return hidden, (inputs, h_n, s_n, squashed_state, gates)


def cells_gradients(net: PaperNet, hidden: Tensor, saved, grad_hidden: Tensor):
    """The truncated (or, with truncate=False, exact) gradients of the cells' parameters that
    learn, in the order of net.cells.parameters(): (parameters, gradients)."""
    cells = net.cells
    inputs, h_n, s_n, squashed_state, gates = saved
    weight_ih, weight_hh = cells.weight_ih_l0, cells.weight_hh_l0
    bias_ih, bias_hh = (cells.bias_ih_l0, cells.bias_hh_l0) if cells.bias else (None, None)
    wanted = [weight_ih.requires_grad, weight_hh.requires_grad,
              bias_ih is not None and (bias_ih.requires_grad or bias_hh.requires_grad)]
    with torch.no_grad():
        _, grad_weight_ih, grad_weight_hh, grad_bias, _, _ = torch.ops.lstm1997._lstm_backward(
            grad_hidden, torch.zeros_like(h_n), torch.zeros_like(s_n), inputs, weight_ih,
            weight_hh, None, hidden, squashed_state, gates, truncate=cells.truncate,
            activation=cells.activation, output_mask=[False] + wanted,
            cells_per_block=cells.cells_per_block, gate_feedback=cells.gate_feedback)
    # bias_ih and bias_hh enter as a sum: one gradient serves both (PaperNet holds bias_hh at
    # zero: one learned bias per row).
    pairs = [(weight_ih, grad_weight_ih), (weight_hh, grad_weight_hh), (bias_ih, grad_bias),
             (bias_hh, grad_bias)]
    learning = [(p, g) for p, g in pairs if p is not None and p.requires_grad]
    return [p for p, _ in learning], [g for _, g in learning]


def train_cells_sequence(net: PaperNet, inputs: Tensor, targets: Tensor, mask: Tensor,
                         alpha: float) -> Tensor:
    """train_sequence for the 1997 cells, through cells_forward and cells_gradients."""
    hidden, saved = cells_forward(net, inputs)
    with torch.no_grad():
        outputs = torch.sigmoid(net.readout(hidden))
        error = output_unit_errors(outputs, targets, mask)
        grad_hidden = error @ net.readout.weight
    update(net, error, hidden, *cells_gradients(net, hidden, saved, grad_hidden), alpha)
    return outputs


def train_online(net: PaperNet, inputs: Tensor, targets: Tensor, mask: Tensor,
                 alpha: float) -> Tensor:
    """One sequence with a gradient step after every step that has a target, the gradient of the
    cells coming forward in time from OnlineLSTM's traces. Returns the outputs given.

    The output units' part is the paper's delta rule written out (a logistic unit's error
    (y - target) y (1 - y) times what it sees) instead of an autograd pass per step, which would
    cost more than the step itself; tests compare it with autograd's gradient."""
    online = net.online_layer()
    online.reset()
    weight, bias = net.readout.weight, net.readout.bias
    outputs = []
    with torch.no_grad():
        for t in range(inputs.shape[0]):
            hidden = online(inputs[t])
            output = torch.sigmoid(net.readout(hidden))
            outputs.append(output)
            if mask[t]:
                error = output_unit_errors(output, targets[t], True)  # (1, O)
                grad_hidden = error @ weight
                online.update(grad_hidden, alpha)
                weight.sub_(error.t() @ hidden, alpha=alpha)
                if bias is not None:
                    bias.sub_(error[0], alpha=alpha)
                net.enforce_structure()
    return torch.stack(outputs)


TRAINERS = {"online": train_online, "sequence": train_sequence}
