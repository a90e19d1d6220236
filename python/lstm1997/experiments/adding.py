"""The adding problem (experiment 4 of the paper, section 5.4).

Each step of a sequence is a pair (value, marker): values are uniform in [-1, 1]; markers are 0
except on two marked pairs (marker 1) and on the first and last pairs (marker -1 unless marked).
One of the first 10 pairs is marked (X1), then one of the first T/2 - 1 pairs not yet marked (X2);
if the first pair is marked its value is set to 0. The target, due at the last step, is
0.5 + (X1 + X2) / 4, in [0, 1]; a prediction is correct if its error is below 0.04. Lengths are
uniform in [T, T + T/10], so the time lag between the marked pairs and the target is at least T/2.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from ..modules import LSTM

CORRECT_IF_ERROR_BELOW = 0.04


def adding_batch(
    batch_size: int, T: int, generator: Optional[torch.Generator] = None, dtype=torch.float32
) -> Tuple[Tensor, Tensor, Tensor]:
    """A batch of adding-problem sequences: ``(inputs, targets, lengths)``.

    inputs ``(max_length, batch, 2)`` (value, marker), zero past each sequence's end; targets
    ``(batch,)``; lengths ``(batch,)``, the target being due at step ``lengths - 1``.
    """
    if T < 4:
        raise ValueError(f"adding_batch: T: expected at least 4 (X2 is drawn from the first T/2 - 1 pairs), got {T}")
    lengths = torch.randint(T, T + T // 10 + 1, (batch_size,), generator=generator)
    max_length = int(lengths.max())
    values = torch.rand(max_length, batch_size, generator=generator, dtype=torch.float64) * 2 - 1
    markers = torch.zeros(max_length, batch_size, dtype=torch.float64)
    rows = torch.arange(batch_size)
    first = torch.randint(0, min(10, T // 2 - 1), (batch_size,), generator=generator)
    # X2: uniform over the first T/2 - 1 pairs except the one already marked.
    second = torch.randint(0, T // 2 - 2, (batch_size,), generator=generator)
    second = second + (second >= first).long()
    markers[0] = -1
    markers[lengths - 1, rows] = -1
    markers[first, rows] = 1
    markers[second, rows] = 1
    values[0] = torch.where(markers[0] == 1, torch.zeros_like(values[0]), values[0])
    past_end = torch.arange(max_length).unsqueeze(1) >= lengths.unsqueeze(0)
    values[past_end] = 0
    targets = 0.5 + (values[first, rows] + values[second, rows]) / 4
    inputs = torch.stack([values, markers], dim=2)
    return inputs.to(dtype), targets.to(dtype), lengths


class AddingModel(nn.Module):
    """A 1997 LSTM layer read out at each sequence's last step by one logistic unit."""

    def __init__(self, hidden_size: int = 8, input_gate_bias: float = -2.0, **lstm_options) -> None:
        super().__init__()
        self.lstm = LSTM(2, hidden_size, **lstm_options)
        self.readout = nn.Linear(hidden_size, 1)
        # The paper's remedy for state drift: negative input-gate biases keep cells closed at first.
        with torch.no_grad():
            self.lstm.bias_ih_l0[:hidden_size] += input_gate_bias

    def forward(self, inputs: Tensor, lengths: Tensor) -> Tensor:
        output, _ = self.lstm(inputs)
        last = output[lengths - 1, torch.arange(output.size(1))]
        return torch.sigmoid(self.readout(last)).squeeze(-1)


def fraction_correct(predictions: Tensor, targets: Tensor) -> float:
    return ((predictions - targets).abs() < CORRECT_IF_ERROR_BELOW).double().mean().item()
