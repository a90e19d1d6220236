"""Exp 2a's cell and outputs during training: what docs/results_notes.md (sixth pass) reports.

    PYTHONPATH=python python docs/diagnostics/two_sequence_cell.py SEQUENCES [INPUT_GATE_BIAS]

Trains trial 0 (seed 0) of `python -m lstm1997.experiments two-sequence --variant a --p 100`
(with `--input-gate-bias` when given) and prints, every 500 sequences and every 100 in the first
1,600 after the cell is added: the streak of correct sequences, the largest error of the last
sequence, what the cell adds to its state per step for the a's (mean), x and y (input gate times
cell input), the readout weights from the cell to the x and y outputs, and the x and y outputs at
the final prediction.
"""
import sys

import torch

from lstm1997.experiments.two_sequence import TwoSequence


def main(sequences: int, input_gate_bias=None) -> None:
    torch.set_num_threads(1)
    experiment = TwoSequence(seed=0)
    net = experiment.make_net(0, input_gate_bias=input_gate_bias)
    p = experiment.p
    added_at = None
    for n in range(1, sequences + 1):
        inputs, targets, mask = experiment.training_sequence()
        outputs = net.train_online(inputs, targets, mask, experiment.alpha)
        experiment.solved(net, outputs)
        if net.cell_added and added_at is None:
            added_at = n
        early = added_at is not None and n - added_at < 1600 and n % 100 == 0
        if n % 500 and not early:
            continue
        with torch.no_grad():
            added = torch.sigmoid(net.input_gate.detach()) * torch.sigmoid(net.cell_input.detach())
            readout = net.readout.detach()[:, -1]
            final, target = outputs[-2, 0], targets[-2, 0]
            largest = float((outputs - targets)[mask].abs().max())
        print(f"{n:6d} cell {'added' if net.cell_added else 'not yet'} streak "
              f"{experiment.correct_in_a_row:5d} largest error {largest:.3f} | state added per "
              f"step: a's {float(added[:p - 1].mean()):.3f} x {float(added[p - 1]):.3f} y "
              f"{float(added[p]):.3f} | cell->x {float(readout[p - 1]):6.2f} cell->y "
              f"{float(readout[p]):6.2f} | final outputs x {float(final[p - 1]):.2f} y "
              f"{float(final[p]):.2f} (target {'x' if target[p - 1] > 0.5 else 'y'})", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else None)
