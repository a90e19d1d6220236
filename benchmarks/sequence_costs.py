"""Where one training sequence of the paper's experiments spends its time (issue #20).

    python benchmarks/sequence_costs.py [--repeats N]

For each experiment setting below, one thread, the trial loop's parts as the runner
(python -m lstm1997.experiments) calls them, median microseconds per sequence:
  data:        experiment.training_sequence() (drawing the sequence, its targets and mask)
  train:       the recipe's step (paper_net.train_sequence: forward, readout, truncated backward,
               updates)
  of it layer: the memory cell layer alone in that step (its forward and truncated backward ops,
               paper_net.cells_forward and cells_gradients, as train_sequence calls them)
  bookkeeping: the runner's per-sequence error and the experiment's stopping rule
  whole:       one iteration of the runner's loop (all of the above, each on its own sequence)
"""
import argparse
import time

import torch

from lstm1997.experiments.__main__ import EXPERIMENTS
from lstm1997.experiments.paper_net import (
    PaperNet, cells_forward, cells_gradients, squared_error, train_sequence)

SETTINGS = [  # (experiment, options): the sequence-recipe rows, their longest settings
    ("long-lag", {"q": 1000, "p": 1000}),
    ("noise-signal", {"variant": "a", "T": 1000, "N": 3}),
    ("adding", {"T": 1000}),
    ("multiplication", {}),
    ("temporal-order", {"variant": "b"}),
]


def median_us(task, repeats):
    for _ in range(min(20, repeats)):
        task()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        task()
        times.append(time.perf_counter() - start)
    times.sort()
    return 1e6 * times[len(times) // 2]


def costs(name, options, repeats):
    experiment = EXPERIMENTS[name](0, **options)
    net = PaperNet(**experiment.net_options(), seed=0)
    alpha = experiment.alpha
    sequence = experiment.training_sequence()
    steps = sequence[0].shape[0]
    outputs = train_sequence(net, *sequence, alpha)
    grad_hidden = torch.zeros(steps, 1, net.hidden_size)
    grad_hidden[-1] = 0.1

    def data():
        experiment.training_sequence()

    def train():
        train_sequence(net, *sequence, alpha)

    def layer():
        hidden, saved = cells_forward(net, sequence[0])
        cells_gradients(net, hidden, saved, grad_hidden)

    def bookkeeping():
        squared_error(outputs, sequence[1], sequence[2]).item()
        experiment.solved(net, outputs)

    def whole():
        inputs, targets, mask = experiment.training_sequence()
        given = train_sequence(net, inputs, targets, mask, alpha)
        squared_error(given, targets, mask).item() / max(1, int(mask.sum()))
        experiment.solved(net, given)

    parts = {"data": data, "train": train, "of it layer": layer, "bookkeeping": bookkeeping,
             "whole": whole}
    return steps, {part: median_us(task, repeats) for part, task in parts.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the runner runs a trial
    try:
        print_costs(args.repeats)
    finally:
        torch.set_num_threads(threads)


def print_costs(repeats):
    print(f"torch {torch.__version__}, 1 thread; median us per sequence over {repeats}")
    header = (f"{'experiment':<34} {'steps':>6} | {'data':>7} {'train':>7} {'of it layer':>11} "
              f"{'bookkeeping':>11} | {'whole':>7} {'layer/whole':>11}")
    print(header)
    print("-" * len(header))
    for name, options in SETTINGS:
        steps, us = costs(name, options, repeats)
        label = name + " " + " ".join(f"{k}={v}" for k, v in options.items())
        print(f"{label:<34} {steps:>6} | {us['data']:>7.1f} {us['train']:>7.1f} "
              f"{us['of it layer']:>11.1f} {us['bookkeeping']:>11.1f} | {us['whole']:>7.1f} "
              f"{us['of it layer'] / us['whole']:>10.0%}", flush=True)


if __name__ == "__main__":
    main()
