"""The two calls of OnlineLSTM's one-step path (its stepper's forward and update, one op each),
each timed alone from Python, beside an in-place add over the same traces (one read and one write
of them: what any update of the traces costs).

    python benchmarks/online_step_parts.py [--threads N]

Best of 7 runs of 200 calls each, us per call, float32, for the shapes of bench.py's online table.
"""
import argparse
import time

import torch

import lstm1997

SHAPES = [(1, 32, 64), (16, 32, 64), (16, 128, 256)]  # (B, I, H)


def best_time(call, calls=200):
    for _ in range(10):
        call()
    runs = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        runs.append((time.perf_counter() - start) / calls)
    return 1e6 * min(runs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, us per call")
    print(f"{'B':>3} {'I':>4} {'H':>4} | {'forward op':>10} {'update op':>9} | {'add_ over traces':>16} {'trace MB':>8}")
    for B, I, H in SHAPES:
        torch.manual_seed(0)
        online = lstm1997.OnlineLSTM(I, H)
        x = torch.randn(B, I)
        online.backward(torch.ones_like(online(x)))  # the stream's state, buffers and .grad
        stream = online._stream
        parameters = [online.weight_ih_l0, online.weight_hh_l0, online.bias_ih_l0,
                      online.bias_hh_l0]
        grad_output = torch.full((B, H), 1e-9)

        stepper = stream.stepper

        def forward():
            stepper.forward(x, *parameters, False)

        def update():  # backward(): the gradient added to every .grad
            stepper.update(grad_output, *parameters, 1.0, True)

        def add_over_traces():
            for trace in stream.traces:
                trace.add_(1e-9)
        trace_mb = sum(t.numel() * t.element_size() for t in stream.traces) / 2**20
        print(f"{B:>3} {I:>4} {H:>4} | {best_time(forward):>10.1f} {best_time(update):>9.1f} | "
              f"{best_time(add_over_traces):>16.1f} {trace_mb:>8.2f}")


if __name__ == "__main__":
    main()
