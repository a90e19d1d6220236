"""Demo: the 1997 LSTM learns the adding problem (the paper's experiment 4), a long-time-lag task.

    python -m lstm1997.demo [--T 100] [--exact] [--activation paper]

Trains with mini-batches and Adam (not the paper's online SGD: see ``lstm1997.experiments`` for
that) and prints the training loss and the fraction of held-out sequences solved (|error| < 0.04)
until that fraction reaches --goal or the step budget runs out.
"""
import argparse
import time

import torch

from .experiments.adding import AddingModel, adding_batch, fraction_correct


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lstm1997.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--T", type=int, default=100, help="minimum sequence length (lag >= T/2)")
    parser.add_argument("--hidden-size", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--steps", type=int, default=4000, help="training step budget")
    parser.add_argument("--goal", type=float, default=0.99, help="fraction of test sequences solved")
    parser.add_argument("--exact", action="store_true", help="exact BPTT instead of the truncated gradient")
    parser.add_argument("--activation", choices=["tanh", "paper"], default="tanh")
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    model = AddingModel(args.hidden_size, truncate=not args.exact, activation=args.activation)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    train_data = torch.Generator().manual_seed(args.seed)
    test_inputs, test_targets, test_lengths = adding_batch(
        1000, args.T, torch.Generator().manual_seed(args.seed + 1)
    )
    # Predicting the mean target everywhere scores this mean squared error.
    baseline = test_targets.var(unbiased=False).item()
    print(f"adding problem, T={args.T} (lags of at least {args.T // 2} steps); {model.lstm}")
    print(f"test MSE of always predicting the mean: {baseline:.4f}")
    start = time.perf_counter()
    solved = 0.0
    for step in range(1, args.steps + 1):
        inputs, targets, lengths = adding_batch(args.batch_size, args.T, train_data)
        loss = (model(inputs, lengths) - targets).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % args.log_every == 0 or step == args.steps:
            with torch.no_grad():
                predictions = model(test_inputs, test_lengths)
            test_mse = (predictions - test_targets).pow(2).mean().item()
            solved = fraction_correct(predictions, test_targets)
            print(
                f"step {step:5d}  train MSE {loss.item():.5f}  test MSE {test_mse:.5f}  "
                f"solved {100 * solved:5.1f}%  {time.perf_counter() - start:6.1f}s",
                flush=True,
            )
            if solved >= args.goal:
                print(f"solved {100 * solved:.1f}% of {len(test_targets)} test sequences after "
                      f"{step * args.batch_size} training sequences")
                break
    return solved


if __name__ == "__main__":
    main()
