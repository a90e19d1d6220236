"""Experiment 6: temporal order (section 5.6 of the paper).

8 symbols, one-hot: E, B, a, b, c, d, X, Y. A sequence is 100 to 110 symbols long (uniform), starts
with E, ends with B, and holds random symbols from a, b, c, d elsewhere, except at the relevant
positions, which hold X or Y (each with probability 1/2):
- 6a: positions t1 in [10, 20] and t2 in [50, 60] -> 4 classes (XX, XY, YX, YY);
- 6b: t1 in [10, 20], t2 in [33, 43], t3 in [66, 76] -> 8 classes.
The class is the sequence of X/Y read as binary digits (X = 0, Y = 1, first position most
significant); one output unit per class, target 1 for the class and 0 for the others, due at the
last step (B). Positions are 0-based indices (the notes do not say; it changes nothing).
A final output is correct if every output's absolute error is below 0.3. Stop when the mean
absolute final error (per output) of the last 2,000 training sequences is below 0.1 and all of
them are correct; test on 2,560 fresh sequences. Nets: 6a 2 blocks of 2 cells, alpha 0.5,
input-gate biases -2, -4; 6b 3 blocks of 2 cells, alpha 0.1, input-gate biases -2, -4, -6; both
with biases on all non-input units, as the paper states (the input-gate biases given, the others
random like the weights), weights in [-0.1, 0.1].
"""
import random
from typing import List, Tuple

import torch
from torch import Tensor

from .final_target import FinalTargetExperiment, one_hot_rows

SYMBOLS = "EBabcdXY"
INDEX = {s: i for i, s in enumerate(SYMBOLS)}
POSITIONS = {"a": [(10, 20), (50, 60)], "b": [(10, 20), (33, 43), (66, 76)]}


def temporal_order_sequence(rng: random.Random, variant: str) -> Tuple[str, int, List[int]]:
    """(symbols, class, positions of the X/Y symbols)."""
    length = rng.randint(100, 110)
    symbols = ["E"] + [rng.choice("abcd") for _ in range(length - 2)] + ["B"]
    label, positions = 0, []
    for low, high in POSITIONS[variant]:
        position = rng.randint(low, high)
        bit = rng.randrange(2)
        symbols[position] = "XY"[bit]
        label = 2 * label + bit
        positions.append(position)
    return "".join(symbols), label, positions


class TemporalOrder(FinalTargetExperiment):
    name = "temporal-order"
    paper = {"6a": "31,390, 1/2560 wrong", "6b": "571,100, 2/2560 wrong"}
    tolerance = 0.3

    def __init__(self, seed: int, variant: str = "a", alpha: float = None) -> None:
        super().__init__(seed)
        if variant not in POSITIONS:
            raise ValueError(f"temporal-order: variant: expected a or b, got {variant!r}")
        self.variant = variant
        self.classes = 2 ** len(POSITIONS[variant])
        self.alpha = alpha if alpha is not None else (0.5 if variant == "a" else 0.1)
        self.paper_key = f"6{variant}"

    def net_options(self):
        blocks = 2 if self.variant == "a" else 3
        return dict(input_size=len(SYMBOLS), output_size=self.classes, blocks=blocks,
                    cells_per_block=2, init_range=0.1, all_biases=True,
                    input_gate_bias=[-2.0 * (k + 1) for k in range(blocks)])

    def sample(self, rng: random.Random) -> Tuple[Tensor, Tensor]:
        symbols, label, _ = temporal_order_sequence(rng, self.variant)
        inputs = one_hot_rows([INDEX[s] for s in symbols], len(SYMBOLS))
        target = torch.zeros(self.classes)
        target[label] = 1.0
        return inputs, target

    def stopped(self) -> bool:
        return self.all_recent_correct() and self.mean_recent_absolute_error() < 0.1
