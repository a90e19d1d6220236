"""Experiment 2a: long time lags without noise (section 5.2 of the paper).

p + 1 symbols a_1 ... a_{p-1}, x, y, one-hot. Two sequences, each drawn with probability 1/2:
(y, a_1, ..., a_{p-1}, y) and (x, a_1, ..., a_{p-1}, x). The net predicts the next symbol at every
step; all predictions but the last are trivial, the last needs the first symbol, p steps back.

Readings (the project's notes of the paper give this experiment's result only, 100% success after
5,040 sequences on average, not its net or stopping rule): 8 blocks x 1 cell (2 cells, as in exp 2c,
cannot even learn the trivial next-symbol predictions through a readout from the cells only), no
biases, weights in [-0.2, 0.2], alpha = 1.0; success: the final symbol is the most active output at
the last step of 100 training sequences in a row; the test reports the fraction of 256 fresh
sequences whose final prediction is wrong.
"""
import random

import torch
from torch import Tensor

from .paper_net import next_symbol_task


def two_sequence(p: int, first: str) -> Tensor:
    """Symbol indices of one sequence: a_k is k - 1 (k = 1 .. p-1), x is p - 1, y is p."""
    end = p - 1 if first == "x" else p
    return torch.tensor([end] + list(range(p - 1)) + [end])


def encode(indices: Tensor, p: int):
    return next_symbol_task(indices, p + 1)


class TwoSequence:
    name = "two-sequence"
    paper = {"p=100": "100%, 5,040"}
    check_every = 1
    in_a_row = 100

    def __init__(self, seed: int, p: int = 100, alpha: float = 1.0, blocks: int = 8) -> None:
        self.rng = random.Random(seed)
        self.p, self.alpha, self.blocks = p, alpha, blocks
        self.paper_key = f"p={p}"
        self.last_correct = []

    def net_options(self):
        return dict(input_size=self.p + 1, output_size=self.p + 1, blocks=self.blocks, init_range=0.2)

    def training_sequence(self):
        self.current = two_sequence(self.p, self.rng.choice("xy"))
        return encode(self.current, self.p)

    def final_correct(self, outputs: Tensor, indices: Tensor) -> bool:
        return int(outputs[-2].reshape(-1).argmax()) == int(indices[-1])

    def solved(self, net, recent_outputs) -> bool:
        self.last_correct.append(self.final_correct(recent_outputs, self.current))
        self.last_correct = self.last_correct[-self.in_a_row:]
        return len(self.last_correct) == self.in_a_row and all(self.last_correct)

    def test(self, net) -> float:
        rng = random.Random(12345)
        wrong = 0
        with torch.no_grad():
            for _ in range(256):
                indices = two_sequence(self.p, rng.choice("xy"))
                wrong += not self.final_correct(net(encode(indices, self.p)[0]), indices)
        return wrong / 256
