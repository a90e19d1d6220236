"""The two calls of OnlineLSTM's one-step path (its stepper's forward and update, one op each),
each timed alone from Python, beside an in-place add over the same traces (one read and one write
of them: what any update of the traces costs); then the chunk op (lstm_online_step_, a chunk's
gradient and its terms added to the traces) on chunks of 2 and 10 steps, with the gradient and
without it (the traces' advance alone).

    python benchmarks/online_step_parts.py [--threads N]

Best of 7 runs of 200 calls each (20 for the chunk op), us per call, float32, for the shapes of
bench.py's online table.
"""
import argparse
import time

import torch

import lstm1997

SHAPES = [(1, 32, 64), (16, 32, 64), (16, 128, 256)]  # (B, I, H)


CHUNK_STEPS = (2, 10)
OPS = torch.ops.lstm1997


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
    print()
    print("the chunk op (lstm_online_step_) on chunks of T steps, traces gate row by gate row, us per call")
    print(f"{'B':>3} {'I':>4} {'H':>4} {'T':>3} | {'with gradient':>13} {'advance alone':>13}")
    for B, I, H in SHAPES:
        for T in CHUNK_STEPS:
            torch.manual_seed(0)
            x, h0, s0 = torch.randn(T, B, I), torch.randn(B, H), torch.zeros(B, H)
            w_ih, w_hh = 0.1 * torch.randn(3 * H, I), 0.1 * torch.randn(3 * H, H)
            output, _, _, squashed_state, gates = OPS._lstm_forward(x, w_ih, w_hh, None, None, h0, s0)
            # As OnlineLSTM keeps them: (B, 2H, width) views of (2H, B, width) tensors.
            traces = [torch.randn(2 * H, B, I).transpose(0, 1), torch.randn(2 * H, B, H).transpose(0, 1),
                      torch.randn(2 * H, B).t()]
            grad_output = torch.full_like(output, 1e-9)
            chunk = (x, w_ih, w_hh, h0, output, squashed_state, gates)

            def with_gradient():
                OPS.lstm_online_step_(*traces, grad_output, *chunk)

            def advance_alone():
                OPS.lstm_online_step_(*traces, None, *chunk)
            print(f"{B:>3} {I:>4} {H:>4} {T:>3} | {best_time(with_gradient, 20):>13.1f} "
                  f"{best_time(advance_alone, 20):>13.1f}")


if __name__ == "__main__":
    main()
