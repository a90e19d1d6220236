"""The 1997 cell on continual input, and the paper's remedy for internal state drift.

pytorch/examples' time_sequence_prediction trains on sine waves of 999 steps that never reset the
state. The 1997 cell cannot forget (the forget gate came in 2000): its cell state sums the input
gate's contributions, so on a long input whose cell inputs lean one way it drifts, h(s) saturates
and the gradient through h'(s) vanishes. The paper's remedy (its section 4) is a negative input-gate
bias (lstm1997.set_gate_biases). This script trains the same next-value predictor (two layers of
51 cells and a linear read-out, as in time_sequence_prediction, with Adam) with and without it, and
prints the largest |s| at initialisation and the mean squared error on held-out waves.

    python examples/continual_sine.py [--steps 300] [--seeds 3] [--input-gate-bias -3]
"""
import argparse
import math

import torch
from torch import nn

import lstm1997


def sine_waves(count, length, generator):
    """time_sequence_prediction's data: sin(x / 20) from a random start in [-80, 80)."""
    start = torch.randint(-80, 80, (count, 1), generator=generator).double()
    return torch.sin((torch.arange(length).double() + start) / 20.0).float()


class Predictor(nn.Module):
    def __init__(self, input_gate_bias=None):
        super().__init__()
        self.rnn = lstm1997.LSTM(1, 51, num_layers=2, batch_first=True)
        if input_gate_bias is not None:
            lstm1997.set_gate_biases(self.rnn, input_gate=input_gate_bias)
        self.head = nn.Linear(51, 1)

    def forward(self, waves):
        output, (h_n, s_n) = self.rnn(waves.unsqueeze(-1))
        return self.head(output).squeeze(-1), s_n


def run(seed, steps, input_gate_bias):
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    train, test = sine_waves(97, 1000, generator), sine_waves(3, 1000, generator)
    model = Predictor(input_gate_bias)
    with torch.no_grad():
        _, s_n = model(train[:, :-1])
    drift = s_n.abs().max().item()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(steps):
        optimizer.zero_grad()
        prediction, _ = model(train[:, :-1])
        loss = (prediction - train[:, 1:]).square().mean()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        prediction, _ = model(test[:, :-1])
        test_mse = (prediction - test[:, 1:]).square().mean().item()
    return drift, test_mse


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--input-gate-bias", type=float, default=-3.0)
    args = parser.parse_args(argv)
    results = {}
    for label, bias in (("default init", None), (f"input-gate bias {args.input_gate_bias:g}",
                                                  args.input_gate_bias)):
        runs = [run(seed, args.steps, bias) for seed in range(args.seeds)]
        results[label] = runs
        drifts = ", ".join(f"{d:.1f}" for d, _ in runs)
        errors = ", ".join(f"{e:.2e}" for _, e in runs)
        print(f"{label}: max |s| at init {drifts}; test MSE after {args.steps} steps {errors}",
              flush=True)
    return results


if __name__ == "__main__":
    main()
