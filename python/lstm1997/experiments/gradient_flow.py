"""The paper's central claim as numbers (and a picture): error flows back through the constant error
carousel without vanishing.

For a loss at the last step of a sequence of length T (the sum of the last output), the norm of its
gradient with respect to the input k steps back and to the state (cell state; hidden state for
the RNN) k steps back, k = 0 .. T-1, for torch.nn.RNN (tanh), torch.nn.LSTM (forget gate, default
init) and the 1997 cell with the paper's truncated gradient and with exact BPTT. Same sizes, inputs
and seed for all; each model's default initialisation.

    python -m lstm1997.experiments gradient-flow [--T 1000] [--plot gradient_flow.png]
"""
from typing import Dict, List

import torch
from torch import nn

from ..modules import LSTMCell

MODELS = ("rnn", "lstm", "lstm1997 truncated", "lstm1997 exact")


def _cell(model: str, input_size: int, hidden_size: int):
    if model == "rnn":
        return nn.RNNCell(input_size, hidden_size)
    if model == "lstm":
        return nn.LSTMCell(input_size, hidden_size)
    return LSTMCell(input_size, hidden_size, truncate=model.endswith("truncated"))


def gradient_norms(model: str, T: int = 1000, input_size: int = 4, hidden_size: int = 16,
                   seed: int = 0) -> Dict[str, List[float]]:
    """{"input": [|dL/dx_{T-1-k}|], "state": [|dL/ds_{T-1-k}|]} for k = 0 .. T-1 (batch of 1);
    the state's entry for k = 0 is None."""
    torch.manual_seed(seed)
    cell = _cell(model, input_size, hidden_size).double()
    inputs = torch.randn(T, 1, input_size, dtype=torch.float64, requires_grad=True)
    states = []
    hx = None
    for t in range(T):
        if model == "rnn":
            hx = cell(inputs[t], hx)
            state = hx
            output = hx
        else:
            hx = cell(inputs[t], hx)
            output, state = hx
        state.retain_grad()
        states.append(state)
    output.sum().backward()
    input_norms = inputs.grad[:, 0].norm(dim=1).flip(0).tolist()
    # The error on the state of step T-1-k for k >= 1: what flows back into step T-k. (The last
    # state itself receives nothing from outside: the loss reads the last output.)
    state_norms = [None] + [s.grad[0].norm().item() for s in reversed(states[:-1])]
    return {"input": input_norms, "state": state_norms}


def run(T: int = 1000, plot: str = None, quiet: bool = False) -> Dict[str, Dict[str, List[float]]]:
    results = {model: gradient_norms(model, T) for model in MODELS}
    if not quiet:
        ks = sorted({k for k in (0, 1, 10, 100) if k < T} | {T - 1})
        print("norm of d(loss at the last step) / d(input k steps back)")
        print(f"{'model':>20} " + " ".join(f"{'k=' + str(k):>10}" for k in ks))
        for model, norms in results.items():
            print(f"{model:>20} " + " ".join(f"{norms['input'][k]:>10.3e}" for k in ks))
    if plot:
        _plot(results, plot)
    return results


def _plot(results, path: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for side, key in zip(axes, ("input", "state")):
        for model, norms in results.items():
            ks = [k for k, v in enumerate(norms[key]) if v is not None]
            side.plot(ks, [max(norms[key][k], 1e-300) for k in ks], label=model)
        side.set_yscale("log")
        side.set_xlabel("k (steps back from the loss)")
        side.set_title(f"|d loss / d {key} k steps back|")
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"figure: {path}")
