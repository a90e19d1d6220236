"""Exp 1's net during training: what docs/results_notes.md (sixth pass) reports.

    PYTHONPATH=python python docs/diagnostics/reber_cells.py SEQUENCES [--exact] [RUNNER OPTIONS]

Trains one trial of `python -m lstm1997.experiments reber RUNNER OPTIONS` (for example
`--cells-per-block 2 --alpha 0.5 --recipe sequence`); `--exact` makes the cells' gradient exact
BPTT instead of the paper's truncated one (the sequence recipe only). Every 2,500 strings it prints,
over the 256 test strings, the predictions that are wrong by position (the first two steps, the
inner Reber string, the second-to-last step, which needs the branch symbol, the last), and over the
first 100 test strings, at the second-to-last step: each cell's median |s| and each block's mean
input- and output-gate activation.
"""
import sys

import torch

from lstm1997.experiments.__main__ import make_experiment, make_net, parse_args, trainer
from lstm1997.experiments.reber import INDEX, encode


def wrong_by_position(net, experiment):
    counts = {}
    with torch.no_grad():
        for symbols, legal in experiment.test_strings:
            outputs = net(encode(symbols)[0])[:, 0]
            last = len(symbols) - 1
            for t, (output, allowed) in enumerate(zip(outputs, legal)):
                if not allowed:
                    continue
                kind = ("first" if t < 2 else "second-to-last" if t == last - 2
                        else "last" if t == last - 1 else "inner")
                top = set(torch.topk(output, len(allowed)).indices.tolist())
                wrong, total = counts.get(kind, (0, 0))
                counts[kind] = (wrong + (top != {INDEX[s] for s in allowed}), total + 1)
    return " ".join(f"{kind} {wrong}/{total}" for kind, (wrong, total) in counts.items())


def cells_before_the_branch(net, experiment, blocks):
    online = net.online_layer()
    states, recurrent = [], []
    with torch.no_grad():
        for symbols, _ in experiment.test_strings[:100]:
            online.reset()
            inputs = encode(symbols)[0]
            for t in range(len(symbols) - 2):
                online(inputs[t])
            states.append(online.cell_state[0].abs())
            recurrent.append(online.hidden[0])
    state = torch.stack(states).median(0).values
    gates = torch.stack(recurrent).mean(0)
    return (f"median |s| per cell {[round(v, 1) for v in state.tolist()]} input gates "
            f"{[round(v, 2) for v in gates[:blocks].tolist()]} output gates "
            f"{[round(v, 2) for v in gates[-blocks:].tolist()]}")


def main(argv):
    sequences, exact = int(argv[0]), "--exact" in argv
    args = parse_args(["reber"] + [a for a in argv[1:] if a != "--exact"])
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    experiment = make_experiment(args, args.seed)
    net = make_net(experiment, args, args.seed)
    if exact:
        if args.recipe != "sequence":
            raise SystemExit("--exact: only with --recipe sequence")
        net.cells.truncate = False
    train = trainer(net, args.recipe)
    for n in range(sequences + 1):
        if n:
            inputs, targets, mask = experiment.training_sequence()
            train(net, inputs, targets, mask, experiment.alpha)
        if n % 2500 == 0:
            print(f"{n:6d} wrong: {wrong_by_position(net, experiment)} | "
                  f"{cells_before_the_branch(net, experiment, experiment.blocks)}", flush=True)
    bias = net.cells.bias_ih_l0.detach()
    K, H = experiment.blocks, net.hidden_size
    print("input-gate biases", [round(v, 2) for v in bias[:K].tolist()], "output-gate biases",
          [round(v, 2) for v in bias[K + H:].tolist()])


if __name__ == "__main__":
    main(sys.argv[1:])
