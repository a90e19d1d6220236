"""Experiment 1: the embedded Reber grammar (section 5.1 of the paper).

A Reber string walks the grammar's graph from B to E, each branch taken with probability 1/2:

    node 1 -T-> 2, node 1 -P-> 3     node 2 -S-> 2, node 2 -X-> 4     node 3 -T-> 3, node 3 -V-> 5
    node 4 -X-> 3, node 4 -S-> end   node 5 -P-> 4, node 5 -V-> end

(B leads into node 1, E follows the end). An embedded string is B, T or P, a Reber string, the same
T or P again, E: predicting the second-to-last symbol needs the second one, remembered across the
whole inner string. 7 one-hot inputs and outputs (B T P S X V E); the net predicts the next symbol.

Readings: the target at each step is the symbol that actually follows (one-hot); success as in the
paper: at every step of every training and test string, the outputs of the legal next symbols are
the k most active ones (k = the number of legal next symbols); checked every 100 training strings.
As in the paper, the 256 test strings are not training strings (drawn from the grammar, any string
already among the 256 training strings drawn again).
"""
import random
from typing import List, Set, Tuple

import torch
from torch import Tensor

from .paper_net import next_symbol_task

SYMBOLS = "BTPSXVE"
INDEX = {s: i for i, s in enumerate(SYMBOLS)}
# node -> [(symbol, next node)]; None marks the end of the inner string.
GRAPH = {
    1: [("T", 2), ("P", 3)],
    2: [("S", 2), ("X", 4)],
    3: [("T", 3), ("V", 5)],
    4: [("X", 3), ("S", None)],
    5: [("P", 4), ("V", None)],
}


def reber_string(rng: random.Random) -> Tuple[str, List[Set[str]]]:
    """A Reber string and, for each of its symbols, the set of symbols that may follow it."""
    symbols, legal_next = ["B"], [{"T", "P"}]
    node = 1
    while node is not None:
        symbol, node = rng.choice(GRAPH[node])
        symbols.append(symbol)
        legal_next.append({s for s, _ in GRAPH[node]} if node is not None else {"E"})
    symbols.append("E")
    legal_next.append(set())  # nothing follows within the inner string
    return "".join(symbols), legal_next


def embedded_reber_string(rng: random.Random) -> Tuple[str, List[Set[str]]]:
    """An embedded Reber string and the legal next symbols after each symbol (empty after the
    final E)."""
    branch = rng.choice("TP")
    inner, inner_next = reber_string(rng)
    inner_next[-1] = {branch}  # after the inner E comes the remembered branch symbol
    symbols = "B" + branch + inner + branch + "E"
    legal_next = [{"T", "P"}, {"B"}] + inner_next + [{"E"}, set()]
    return symbols, legal_next


def encode(symbols: str) -> Tuple[Tensor, Tensor, Tensor]:
    """(inputs (T, 1, 7), targets (T, 1, 7), mask (T,)): one-hot symbols, the next symbol as the
    target of each step, and which steps have a target (all but the last)."""
    return next_symbol_task(torch.tensor([INDEX[s] for s in symbols]), len(SYMBOLS))


class Reber:
    name = "reber"
    paper = {  # (blocks x cells, alpha) -> (success rate, mean sequences until success), 30 trials
        "4x1 alpha=0.1": "100%, 39,740", "4x1 alpha=0.5": "97%, 9,500",
        "3x2 alpha=0.1": "100%, 21,730", "3x2 alpha=0.2": "97%, 14,060",
        "3x2 alpha=0.5": "100%, 8,440",
    }
    check_every = 100

    def __init__(self, seed: int, alpha: float = 0.5, cells_per_block: int = 1) -> None:
        rng = random.Random(seed)
        self.train_strings = [embedded_reber_string(rng) for _ in range(256)]
        training = {symbols for symbols, _ in self.train_strings}
        self.test_strings = []
        while len(self.test_strings) < 256:
            candidate = embedded_reber_string(rng)
            if candidate[0] not in training:
                self.test_strings.append(candidate)
        self.rng = rng
        # The paper's two nets: 4 blocks of 1 cell (264 weights) or 3 blocks of 2 cells (276).
        self.alpha, self.cells_per_block = alpha, cells_per_block
        self.blocks = 4 if cells_per_block == 1 else 3
        self.paper_key = f"{self.blocks}x{cells_per_block} alpha={alpha}"

    def net_options(self):
        # Gate biases only: input-gate biases random like the weights (the paper: all weights in
        # [-0.2, 0.2] but the output-gate biases), output-gate biases -1, -2, -3 (-4) (the
        # paper's remedy for abuse).
        return dict(input_size=7, output_size=7, blocks=self.blocks,
                    cells_per_block=self.cells_per_block, init_range=0.2,
                    input_gate_bias=[None] * self.blocks,
                    output_gate_bias=[-(b + 1.0) for b in range(self.blocks)])

    def training_sequence(self):
        return encode(self.rng.choice(self.train_strings)[0])

    @staticmethod
    def correct(outputs: Tensor, legal_next: List[Set[str]]) -> bool:
        """Every legal next symbol among the k most active outputs at every step (outputs (T, 7))."""
        for output, legal in zip(outputs, legal_next):
            if legal:
                top = set(torch.topk(output, len(legal)).indices.tolist())
                if top != {INDEX[s] for s in legal}:
                    return False
        return True

    def fraction_wrong(self, net, strings) -> float:
        with torch.no_grad():
            wrong = sum(not self.correct(net(encode(s)[0])[:, 0], legal) for s, legal in strings)
        return wrong / len(strings)

    def solved(self, net, recent_outputs) -> bool:
        return (self.fraction_wrong(net, self.train_strings) == 0
                and self.fraction_wrong(net, self.test_strings) == 0)

    def test(self, net) -> float:
        return self.fraction_wrong(net, self.test_strings)
