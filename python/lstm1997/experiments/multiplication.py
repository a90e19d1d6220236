"""Experiment 5: the multiplication problem (section 5.5 of the paper).

As the adding problem (exp 4) with values uniform in [0, 1], a marked first pair's value set to
X1 = 1.0, and the target X1 * X2 at the last step; a final output is wrong if its absolute error
exceeds 0.04. Net as in exp 4 (2 blocks of 2 cells) with every bias drawn at random like the
weights ("random biases"), weights in [-0.1, 0.1], alpha 0.1, T = 100. Stop when fewer than n_seq
of the last 2,000 training sequences were wrong (n_seq = 140 or 13); the test reports the
fraction wrong and the mean squared error on 2,560 fresh sequences.
"""
import torch

from .adding import CORRECT_IF_ERROR_BELOW, check_length, marked_pair_sequence
from .final_target import FinalTargetExperiment


class Multiplication(FinalTargetExperiment):
    name = "multiplication"
    paper = {"T=100,n_seq=140": "482,000, 139/2560 wrong, MSE 0.0223",
             "T=100,n_seq=13": "1,273,000, 14/2560 wrong, MSE 0.0139"}
    tolerance = CORRECT_IF_ERROR_BELOW

    def __init__(self, seed: int, T: int = 100, n_seq: int = 140, alpha: float = 0.1) -> None:
        super().__init__(seed)
        check_length(T, "multiplication")
        self.T, self.n_seq, self.alpha = T, n_seq, alpha
        self.paper_key = f"T={T},n_seq={n_seq}"

    def net_options(self):
        return dict(input_size=2, output_size=1, blocks=2, cells_per_block=2, init_range=0.1,
                    all_biases=True)

    def sample(self, rng):
        pairs, x1, x2 = marked_pair_sequence(rng, self.T, 0.0, 1.0)
        return pairs, torch.tensor([x1 * x2])

    def stopped(self) -> bool:
        return self.recent_over_tolerance < self.n_seq
