"""Exp 1 with a bias on the output units (outside the paper's set-up, whose output units have
none): whether the first block's turning into a bias unit is what stops the branch being learned.

    PYTHONPATH=python python docs/diagnostics/reber_output_bias.py RECIPE ALPHA [TRIALS] [STRINGS]

Trials 0 .. TRIALS-1 (default 3) of `python -m lstm1997.experiments reber --cells-per-block 2
--alpha ALPHA --recipe RECIPE` with `output_bias=True` (283 weights instead of 276), STRINGS
(default 30,000) training strings each, the paper's success rule checked every 100; prints when it
held and the fraction of test strings wrong at the end.
"""
import sys

import torch

from lstm1997.experiments.__main__ import make_experiment, parse_args, trainer
from lstm1997.experiments.paper_net import PaperNet


def main(recipe: str, alpha: str, trials: int = 3, strings: int = 30000) -> None:
    torch.set_num_threads(1)
    for seed in range(trials):
        args = parse_args(["reber", "--cells-per-block", "2", "--alpha", alpha, "--recipe",
                           recipe, "--seed", str(seed)])
        torch.manual_seed(seed)
        experiment = make_experiment(args, seed)
        net = PaperNet(**experiment.net_options(), output_bias=True, seed=seed)
        train = trainer(net, recipe)
        success = None
        for n in range(1, strings + 1):
            inputs, targets, mask = experiment.training_sequence()
            train(net, inputs, targets, mask, experiment.alpha)
            if n % 100 == 0 and experiment.solved(net, None):
                success = n
                break
        print(f"{recipe} alpha {alpha} trial {seed} ({net.weight_count()} weights): success "
              f"{'after ' + str(success) if success else 'not within ' + str(strings)} strings, "
              f"{100 * experiment.test(net):.1f}% of test strings wrong", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *[int(a) for a in sys.argv[3:]])
