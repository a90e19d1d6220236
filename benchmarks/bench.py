"""Side-by-side timings of lstm1997.LSTM and torch.nn.LSTM, in one process.

    python benchmarks/bench.py [--quick] [--threads N] [--json FILE]

For each shape (T, B, I, H) it times, interleaved so that machine noise hits both alike, the
forward pass under no_grad, and a train step (forward + backward of output.sum()) with the truncated
and with the exact backward, against torch.nn.LSTM's forward and forward + backward. Prints medians
and ratios (nn.LSTM time / ours: above 1 means we are faster), and the bytes each saves for backward.

It also times the bare matrix products each of our passes must do (the same products on the same
shapes, nothing else, through torch.mm / addmm and through PyTorch's oneDNN linear op, the faster
of the two counting) and prints our time / that time: how close a pass runs to its GEMM-bound
limit (1.0 would mean everything else is free; below 1.0, our own small-layer product beats both
libraries).

A second table times online learning (lstm1997.OnlineLSTM: forward, then the gradient of a loss on
the new outputs, with the traces that make it exact under the paper's truncation) per step, one
step per call and ten steps per call, against the truncated train step's time per step over the
whole sequence, and compares the memory each keeps: the traces against what backward saves.
The stream's chunks and their loss gradients are made before the clock, like the truncated side's
input; a last column times one step per call with the slicing and ones_like inside the loop.
For one step per call it also prints how the ratio spreads over the rounds (the quartiles of the
per-round ratios) and the ratio of each side's fastest round. ``--online`` runs that table alone.

A third table times the paper's gate feedback (gate_feedback=True: every cell and gate also sees
the gate outputs of t-1) against the same layer without it: forward, and the train step in both
backward modes, for the layers of the paper's experiments and two larger ones. ``--gate-feedback``
runs that table alone.

A fourth table times the device-generic implementation (csrc/generic: ATen ops only, what CUDA and
every other device without kernels of its own run) forced on the CPU with LSTM1997_GENERIC=1,
against the CPU kernels: forward, and the train step in both backward modes. ``--generic`` runs
that table alone.

A sixth table times the layers of the paper's experiments (its network: gate feedback, the
paper's squashers, memory cell blocks) one sequence at a time at T = 1000, against torch.nn.LSTM
of the same input and hidden size: forward, and the train step in both backward modes, as ratios
nn.LSTM time / ours; and the tiny-layer path (csrc/cpu/tiny_layer.cpp, which these layers take by
size) against the paths they took before it (LSTM1997_TINY_LAYER=0), train step truncated; the
truncated train step's ratio over the rounds, as in the online table; and two floors: a train step
of one tensor op, and of one op joining four parameters of the layer's shapes (what the autograd
engine costs any layer with nn.LSTM's four parameters). ``--paper-layers`` runs that table alone.

A seventh table times small layers without blocks (H = 2, 4, 8) at 8 to 128 batch rows: the path
each takes by size against the small-layer loop (LSTM1997_TINY_LAYER=0), forward and the train
step in both backward modes, and torch.nn.LSTM's train step against ours. ``--small-batches`` runs
that table alone.

``--cuda`` (a machine with CUDA only) times the layer on the GPU (the device-generic
implementation) against torch.nn.LSTM on the GPU (cuDNN), float32: forward, and the train step in
both backward modes, as ratios nn.LSTM time / ours; each call ends with torch.cuda.synchronize().

A fifth table times torch.func: an ensemble of 16 small nets (stacked weights, vmap) against one
of them, and per-sample gradients of a batch (vmap over grad) against one ordinary backward of the
same batch. ``--func`` runs that table alone.
"""
import argparse
import json
import os
import platform
import statistics
import time

import torch

import lstm1997

SHAPES = [  # (T, B, I, H)
    (100, 64, 128, 256),
    (1000, 32, 64, 256),
    (100, 1, 128, 256),
    (100, 256, 512, 1024),
    (100, 16, 128, 128),
    (1000, 16, 128, 128),
    (10000, 16, 128, 128),
]
QUICK_SHAPES = [(100, 64, 128, 256), (100, 1, 128, 256), (1000, 16, 128, 128)]
# (T, B, I, H, S): S = 0 a plain layer; S >= 1 the paper's network (gate feedback, its squashers)
# with S cells per block.
ONLINE_SHAPES = [(100, 1, 32, 64, 0), (100, 16, 32, 64, 0), (100, 16, 128, 256, 0),
                 (100, 1, 2, 4, 0), (100, 1, 2, 4, 2)]
GATE_FEEDBACK_SHAPES = [  # (T, B, I, H, cells_per_block)
    (1000, 1, 7, 4, 1),    # exp 1's 4 x 1 net
    (1000, 1, 2, 4, 2),    # exp 4's 2 blocks of 2 cells
    (1000, 1, 1, 3, 1),    # exp 3's 3 x 1 net
    (100, 16, 128, 128, 1),
    (100, 64, 128, 256, 1),
]
SMALL_BATCHES = [(200, B, 7, H) for H in (2, 4, 8) for B in (8, 32, 128)]  # (T, B, I, H)
PAPER_LAYERS = [  # (T, B, I, H, cells_per_block): the paper's nets, one sequence at a time
    (1000, 1, 7, 4, 1),    # exp 1: 4 blocks of 1 cell
    (1000, 1, 104, 2, 1),  # exp 2c (p = 100): 2 blocks of 1 cell, one-hot input of p + 4
    (1000, 1, 1004, 2, 1),  # exp 2c (p = 1000), the q = 1000 rows' largest input
    (1000, 1, 1, 3, 1),    # exp 3: 3 blocks of 1 cell
    (1000, 1, 2, 4, 2),    # exp 4 (and 5): 2 blocks of 2 cells
    (1000, 1, 8, 6, 2),    # exp 6b: 3 blocks of 2 cells
    (1000, 16, 2, 4, 2),   # exp 4's layer on 16 sequences at once
]
CUDA_SHAPES = [  # (T, B, I, H)
    (100, 64, 128, 256),
    (1000, 32, 64, 256),
    (100, 256, 512, 1024),
    (1000, 1, 2, 4),
]
GENERIC_SHAPES = [  # (T, B, I, H, cells_per_block)
    (1000, 1, 2, 4, 2),    # exp 4's 2 blocks of 2 cells
    (1000, 1, 7, 4, 1),    # exp 1's 4 x 1 net
    (100, 16, 128, 128, 1),
    (100, 64, 128, 256, 1),
    (1000, 32, 64, 256, 1),
]


def saved_bytes(module, x):
    """Bytes of the distinct tensors autograd saves for backward during one forward pass."""
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x)
    parameters = {p.untyped_storage().data_ptr() for p in module.parameters()}
    parameters.add(x.untyped_storage().data_ptr())
    return sum(n for ptr, n in storages.items() if ptr not in parameters)


def interleaved_times(tasks, repeats, min_time):
    """Seconds per call of each task in each round: the tasks run in turn, `repeats` rounds."""
    for task in tasks.values():  # warm-up
        task()
    times = {name: [] for name in tasks}
    for _ in range(repeats):
        for name, task in tasks.items():
            calls, start = 0, time.perf_counter()
            while True:
                task()
                calls += 1
                elapsed = time.perf_counter() - start
                if elapsed >= min_time:
                    break
            times[name].append(elapsed / calls)
    return times


def interleaved_medians(tasks, repeats, min_time):
    """Median seconds per call of each task, running the tasks in turn repeatedly."""
    return median_times(interleaved_times(tasks, repeats, min_time))


def median_times(times):
    """The median of each task's rounds."""
    return {name: statistics.median(t) for name, t in times.items()}


def round_ratios(times, numerator, denominator):
    """How a ratio of two tasks' times (numerator / denominator) spreads over the rounds, where
    the two ran minutes apart at most: the quartiles of the per-round ratios, and the ratio of
    each task's fastest round (the run's quietest moments). On a shared host the load slows the
    two tasks unequally, so the ratio of medians alone can hide how far it moves."""
    ratios = [a / b for a, b in zip(times[numerator], times[denominator])]
    low, median, high = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    return {"quartiles": [low, median, high],
            "fastest": min(times[numerator]) / min(times[denominator])}


def forward_task(module, x):
    """A task: the module's forward on x under no_grad."""
    def run():
        with torch.no_grad():
            module(x)
    return run


def train_task(module, x):
    """A task: forward and backward of output.sum()."""
    def run():
        module.zero_grad(set_to_none=True)
        module(x)[0].sum().backward()
    return run


def bare_gemms(T, B, I, H):
    """The matrix products of our forward pass and of our truncated backward (x needs no grad),
    nothing else, through each library PyTorch has: torch.mm / addmm (BLAS) and, where PyTorch has
    oneDNN, its linear op with the weights packed once per pass (as our kernels call it). Returns
    {library: (forward, train)}; the limit of a pass is the faster library."""
    x2d = torch.randn(T * B, I)
    weight_ih, weight_hh, bias = torch.randn(3 * H, I), torch.randn(3 * H, H), torch.randn(3 * H)
    gates = torch.empty(T * B, 3 * H)
    hidden = torch.randn(T * B, H)
    dnet = torch.randn(T * B, 3 * H)
    grad_weight_ih, grad_weight_hh = torch.empty(3 * H, I), torch.empty(3 * H, H)

    def forward():
        torch.addmm(bias, x2d, weight_ih.t(), out=gates)
        for t in range(T):
            gates[t * B : (t + 1) * B].addmm_(hidden[t * B : (t + 1) * B], weight_hh.t())

    def backward():
        torch.mm(dnet.t(), x2d, out=grad_weight_ih)
        torch.mm(dnet[B:].t(), hidden[: (T - 1) * B], out=grad_weight_hh)

    def train():
        forward()
        backward()

    libraries = {"BLAS": (forward, train)}
    if not torch.backends.mkldnn.is_available():
        return libraries
    linear, reorder = torch.ops.mkldnn._linear_pointwise, torch.ops.mkldnn._reorder_linear_weight

    def onednn_forward():
        packed_ih, packed_hh = reorder(weight_ih, T * B), reorder(weight_hh, B)
        projected = linear(x2d, packed_ih, bias, "none", [], "")
        for t in range(T):
            linear.binary(hidden[t * B : (t + 1) * B], projected[t * B : (t + 1) * B], packed_hh,
                          None, "add")

    def onednn_backward():
        linear(x2d.t(), dnet.t(), None, "none", [], "")
        linear(hidden[: (T - 1) * B].t(), dnet[B:].t(), None, "none", [], "")

    def onednn_train():
        onednn_forward()
        onednn_backward()

    libraries["oneDNN"] = (onednn_forward, onednn_train)
    return libraries


def bench_shape(T, B, I, H, repeats, min_time):
    torch.manual_seed(0)
    ours_truncated = lstm1997.LSTM(I, H, truncate=True)
    ours_exact = lstm1997.LSTM(I, H, truncate=False)
    ours_exact.load_state_dict(ours_truncated.state_dict())
    theirs = torch.nn.LSTM(I, H)
    x = torch.randn(T, B, I)


    tasks = {
        "forward ours": forward_task(ours_truncated, x),
        "forward nn.LSTM": forward_task(theirs, x),
        "train truncated ours": train_task(ours_truncated, x),
        "train exact ours": train_task(ours_exact, x),
        "train nn.LSTM": train_task(theirs, x),
    }
    libraries = bare_gemms(T, B, I, H)
    for library, (gemm_forward, gemm_train) in libraries.items():
        tasks[f"forward bare GEMMs {library}"] = gemm_forward
        tasks[f"train truncated bare GEMMs {library}"] = gemm_train
    medians = interleaved_medians(tasks, repeats, min_time)
    for name in ("forward bare GEMMs", "train truncated bare GEMMs"):
        medians[name] = min(medians[f"{name} {library}"] for library in libraries)
    return {
        "shape": [T, B, I, H],
        "seconds": medians,
        "ratio forward": medians["forward nn.LSTM"] / medians["forward ours"],
        "ratio train truncated": medians["train nn.LSTM"] / medians["train truncated ours"],
        "ratio train exact": medians["train nn.LSTM"] / medians["train exact ours"],
        "ours / bare GEMMs forward": medians["forward ours"] / medians["forward bare GEMMs"],
        "ours / bare GEMMs train truncated":
            medians["train truncated ours"] / medians["train truncated bare GEMMs"],
        "saved bytes ours": saved_bytes(ours_truncated, x),
        "saved bytes nn.LSTM": saved_bytes(theirs, x),
    }


def bench_online(T, B, I, H, S, repeats, min_time):
    torch.manual_seed(0)
    options = ({} if S == 0 else
               {"cells_per_block": S, "gate_feedback": True, "activation": "paper"})
    online = lstm1997.OnlineLSTM(I, H, **options)
    sequence = lstm1997.LSTM(I, H, **options)
    sequence.load_state_dict(online.state_dict())
    x = torch.randn(T, B, I)

    def online_steps(chunk):
        # The stream's chunks and each chunk's loss gradient (that of output.sum(), as on the
        # truncated side) are made before the clock, as the truncated side's input is: the rows
        # time the module's two calls a chunk, not the loop's slicing and ones_like (about 1.7 us
        # a step at B = 1 before, benchmarks/README.md, "Issue #20, eighth session").
        chunks = x.split(chunk)
        grad_outputs = torch.ones(T, B, H).split(chunk)

        def run():
            online.reset()
            for piece, grad_output in zip(chunks, grad_outputs):
                online(piece)
                online.backward(grad_output)
        return run

    def online_steps_sliced():
        # The loop as the table timed it before: each step sliced and its gradient made inside.
        def run():
            online.reset()
            for t in range(T):
                output = online(x[t:t + 1])
                online.backward(torch.ones_like(output))
        return run

    def truncated_train():
        sequence.zero_grad(set_to_none=True)
        sequence(x)[0].sum().backward()

    times = interleaved_times(
        {"online 1 step per call": online_steps(1), "online 10 steps per call": online_steps(10),
         "online 1 step per call, sliced in the loop": online_steps_sliced(),
         "truncated train": truncated_train},
        repeats,
        min_time,
    )
    per_step = {name: seconds / T for name, seconds in median_times(times).items()}
    return {
        "shape": [T, B, I, H, S],
        "seconds per step": per_step,
        "online 1 / truncated": per_step["online 1 step per call"] / per_step["truncated train"],
        "online 1 / truncated rounds": round_ratios(times, "online 1 step per call",
                                                    "truncated train"),
        "online 10 / truncated": per_step["online 10 steps per call"] / per_step["truncated train"],
        "online 1 sliced in the loop / truncated":
            per_step["online 1 step per call, sliced in the loop"] / per_step["truncated train"],
        "trace bytes": sum(t.numel() * t.element_size() for t in online.traces),
        "saved bytes truncated": saved_bytes(sequence, x),
    }


PASSES = ("forward", "train truncated", "train exact")


def pass_ratios(shape, medians, new, old):
    """The figures of a table that times each pass of a layer in two variants, `new` and `old`
    (medians keyed "<pass> <variant>"): seconds, and the time ratio new / old of each pass."""
    return {"shape": shape, "seconds": medians,
            **{f"{p} {new} / {old}": medians[f"{p} {new}"] / medians[f"{p} {old}"] for p in PASSES}}


def print_pass_ratios(results, new, old, title):
    print()
    print(title)
    per_step = f"us/step train trunc {new}"
    header = (f"{'T':>6} {'B':>4} {'I':>4} {'H':>5} {'S':>2} | {'forward':>8} {'train trunc':>11} "
              f"{'train exact':>11} | {per_step}")
    print(header)
    print("-" * len(header))
    for r in results:
        T, B, I, H, S = r["shape"]
        forward, truncated, exact = (r[f"{p} {new} / {old}"] for p in PASSES)
        print(f"{T:>6} {B:>4} {I:>4} {H:>5} {S:>2} | {forward:>7.2f}x {truncated:>10.2f}x "
              f"{exact:>10.2f}x | {1e6 * r['seconds'][f'train truncated {new}'] / T:>{len(per_step)}.2f}",
              flush=True)


def switched(variable, on, task):
    """The task with the path switch `variable` (LSTM1997_GENERIC, LSTM1997_TINY_LAYER) set to 1
    or 0 (or unset, on=None: the path by size) before each run: tasks of both settings
    interleave."""
    def run():
        if on is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = "1" if on else "0"
        task()
    return run


def medians_restoring(variable, tasks, repeats, min_time):
    """interleaved_medians of tasks that set `variable`, which is left as it was."""
    return median_times(times_restoring(variable, tasks, repeats, min_time))


def times_restoring(variable, tasks, repeats, min_time):
    """interleaved_times of tasks that set `variable`, which is left as it was."""
    before = os.environ.get(variable)
    try:
        return interleaved_times(tasks, repeats, min_time)
    finally:
        if before is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = before


def bench_gate_feedback(T, B, I, H, S, repeats, min_time):
    torch.manual_seed(0)
    x = torch.randn(T, B, I)
    modules = {(feedback, truncate): lstm1997.LSTM(I, H, cells_per_block=S, truncate=truncate,
                                                   gate_feedback=feedback)
               for feedback in (False, True) for truncate in (True, False)}


    tasks = {}
    for feedback in (False, True):
        name = "with" if feedback else "without"
        tasks[f"forward {name}"] = forward_task(modules[feedback, True], x)
        tasks[f"train truncated {name}"] = train_task(modules[feedback, True], x)
        tasks[f"train exact {name}"] = train_task(modules[feedback, False], x)
    medians = interleaved_medians(tasks, repeats, min_time)
    return pass_ratios([T, B, I, H, S], medians, "with", "without")


def bench_generic(T, B, I, H, S, repeats, min_time):
    """The same layer and input on the CPU kernels and on the generic implementation."""
    torch.manual_seed(0)
    x = torch.randn(T, B, I)
    modules = {truncate: lstm1997.LSTM(I, H, cells_per_block=S, truncate=truncate)
               for truncate in (True, False)}

    def on(generic, task):
        return switched("LSTM1997_GENERIC", generic, task)

    tasks = {}
    for generic in (False, True):
        name = "generic" if generic else "kernels"
        tasks[f"forward {name}"] = on(generic, forward_task(modules[True], x))
        tasks[f"train truncated {name}"] = on(generic, train_task(modules[True], x))
        tasks[f"train exact {name}"] = on(generic, train_task(modules[False], x))
    medians = medians_restoring("LSTM1997_GENERIC", tasks, repeats, min_time)
    return pass_ratios([T, B, I, H, S], medians, "generic", "kernels")


def synchronized(task):
    """The task followed by torch.cuda.synchronize(): a call's time is its GPU work's time."""
    def run():
        task()
        torch.cuda.synchronize()
    return run


def bench_cuda(T, B, I, H, repeats, min_time):
    """lstm1997.LSTM on the GPU (the generic implementation) against torch.nn.LSTM (cuDNN)."""
    torch.manual_seed(0)
    ours = {truncate: lstm1997.LSTM(I, H, truncate=truncate).cuda() for truncate in (True, False)}
    theirs = torch.nn.LSTM(I, H).cuda()
    x = torch.randn(T, B, I, device="cuda")
    tasks = {"forward ours": forward_task(ours[True], x),
             "forward nn.LSTM": forward_task(theirs, x),
             "train truncated ours": train_task(ours[True], x),
             "train exact ours": train_task(ours[False], x),
             "train nn.LSTM": train_task(theirs, x)}
    medians = interleaved_medians({name: synchronized(task) for name, task in tasks.items()},
                                  repeats, min_time)
    return {"shape": [T, B, I, H], "seconds": medians,
            "ratio forward": medians["forward nn.LSTM"] / medians["forward ours"],
            "ratio train truncated": medians["train nn.LSTM"] / medians["train truncated ours"],
            "ratio train exact": medians["train nn.LSTM"] / medians["train exact ours"]}


def print_table_head(title, header):
    """A table's blank line, title, column header and rule."""
    print()
    print(title)
    print(header)
    print("-" * len(header))


def print_cuda(results):
    print_table_head(
        f"on {torch.cuda.get_device_name()}: lstm1997 (generic implementation) against "
        "torch.nn.LSTM (cuDNN), float32 (ratio = nn.LSTM time / ours; above 1 we are faster)",
        f"{'T':>6} {'B':>4} {'I':>4} {'H':>5} | {'forward':>8} {'train trunc':>11} "
        f"{'train exact':>11} | {'ms fwd ours':>11} {'ms train trunc ours':>19}")
    for r in results:
        T, B, I, H = r["shape"]
        ms = {name: 1e3 * v for name, v in r["seconds"].items()}
        print(f"{T:>6} {B:>4} {I:>4} {H:>5} | {r['ratio forward']:>7.2f}x "
              f"{r['ratio train truncated']:>10.2f}x {r['ratio train exact']:>10.2f}x | "
              f"{ms['forward ours']:>11.2f} {ms['train truncated ours']:>19.2f}", flush=True)


def autograd_floor_task(shapes=((1,),)):
    """What any train step pays before its layer's own work, through PyTorch's autograd engine
    (zero_grad, forward, backward of a sum): parameters of the given shapes, (G, *) each, joined
    by one op (times 2 for one). With a layer's parameter shapes: what the engine costs any layer
    with those parameters (an AccumulateGrad for each, one op's node)."""
    weights = [torch.nn.Parameter(torch.ones(shape)) for shape in shapes]

    def run():
        for weight in weights:
            weight.grad = None
        if len(weights) == 1:
            joined = weights[0] * 2.0
        else:
            joined = torch.cat([w if w.dim() == 2 else w.unsqueeze(1) for w in weights], 1)
        joined.sum().backward()
    return run


def bench_paper_layer(T, B, I, H, S, repeats, min_time):
    """One of the paper's layers (gate feedback, its squashers) against torch.nn.LSTM(I, H), and
    against itself with the tiny-layer path off."""
    torch.manual_seed(0)
    x = torch.randn(T, B, I)
    ours = {truncate: lstm1997.LSTM(I, H, cells_per_block=S, truncate=truncate,
                                    activation="paper", gate_feedback=True)
            for truncate in (True, False)}
    theirs = torch.nn.LSTM(I, H)

    def tiny_path(on, task):
        return switched("LSTM1997_TINY_LAYER", on, task)

    tasks = {"forward ours": tiny_path(True, forward_task(ours[True], x)),
             "train truncated ours": tiny_path(True, train_task(ours[True], x)),
             "train exact ours": tiny_path(True, train_task(ours[False], x)),
             "train truncated before": tiny_path(False, train_task(ours[True], x)),
             "forward nn.LSTM": forward_task(theirs, x),
             "train nn.LSTM": train_task(theirs, x),
             "train floor": autograd_floor_task(),
             "train floor parameters": autograd_floor_task(
                 [p.shape for p in ours[True].parameters()])}
    times = times_restoring("LSTM1997_TINY_LAYER", tasks, repeats, min_time)
    medians = median_times(times)
    return {"shape": [T, B, I, H, S], "seconds": medians,
            "ratio forward": medians["forward nn.LSTM"] / medians["forward ours"],
            "ratio train truncated": medians["train nn.LSTM"] / medians["train truncated ours"],
            "ratio train truncated rounds": round_ratios(times, "train nn.LSTM",
                                                         "train truncated ours"),
            "ratio train exact": medians["train nn.LSTM"] / medians["train exact ours"],
            "before / tiny train truncated":
                medians["train truncated before"] / medians["train truncated ours"]}


def bench_small_batch(T, B, I, H, repeats, min_time):
    """A small layer (no blocks) at several batch rows: the path it takes by size against the
    small-layer loop (LSTM1997_TINY_LAYER=0), and against torch.nn.LSTM."""
    torch.manual_seed(0)
    x = torch.randn(T, B, I)
    ours = {truncate: lstm1997.LSTM(I, H, truncate=truncate) for truncate in (True, False)}
    theirs = torch.nn.LSTM(I, H)

    def tiny_path(on, task):
        return switched("LSTM1997_TINY_LAYER", on, task)

    tasks = {}
    for name, path in (("ours", None), ("small-layer loop", False)):
        tasks[f"forward {name}"] = tiny_path(path, forward_task(ours[True], x))
        tasks[f"train truncated {name}"] = tiny_path(path, train_task(ours[True], x))
        tasks[f"train exact {name}"] = tiny_path(path, train_task(ours[False], x))
    tasks["train nn.LSTM"] = train_task(theirs, x)
    medians = medians_restoring("LSTM1997_TINY_LAYER", tasks, repeats, min_time)
    return {"shape": [T, B, I, H], "seconds": medians,
            **{f"loop / ours {pass_}": medians[f"{pass_} small-layer loop"] / medians[f"{pass_} ours"]
               for pass_ in ("forward", "train truncated", "train exact")},
            "nn.LSTM / ours train truncated":
                medians["train nn.LSTM"] / medians["train truncated ours"]}


def print_small_batches(results):
    print_table_head(
        "small layers (no blocks) at several batch rows: the path by size (ours: on AVX-512 "
        "builds float32 layers of H <= 8 take the tiny-layer path's lane-packed rows) against "
        "the small-layer loop (time loop / time ours), and nn.LSTM's train step against ours",
        f"{'T':>6} {'B':>4} {'I':>4} {'H':>5} | {'forward':>8} {'train trunc':>11} "
        f"{'train exact':>11} | {'nn.LSTM train':>13} | {'us train trunc ours':>19}")
    for r in results:
        T, B, I, H = r["shape"]
        print(f"{T:>6} {B:>4} {I:>4} {H:>5} | {r['loop / ours forward']:>7.2f}x "
              f"{r['loop / ours train truncated']:>10.2f}x {r['loop / ours train exact']:>10.2f}x | "
              f"{r['nn.LSTM / ours train truncated']:>12.2f}x | "
              f"{1e6 * r['seconds']['train truncated ours']:>19.1f}", flush=True)


def print_paper_layers(results):
    print()
    print("the paper's layers (gate feedback, its squashers) against torch.nn.LSTM of the same size "
          "(nn.LSTM time / ours); the tiny-layer path against the paths before it (time before / "
          "time tiny); floor: a train step of one tensor op through the autograd engine; "
          "params: of one op (cat) joining four parameters of the layer's shapes; train "
          "trunc's ratio over the rounds: its quartiles, and the ratio of each side's fastest round")
    header = (f"{'T':>6} {'B':>4} {'I':>4} {'H':>5} {'S':>2} | {'forward':>8} {'train trunc':>11} "
              f"{'train exact':>11} | {'rounds q1-q3':>13} {'fastest':>8} | {'tiny vs before':>14} | "
              f"{'us/call train trunc':>19} {'nn.LSTM':>8} {'floor':>6} {'params':>6}")
    print(header)
    print("-" * len(header))
    for r in results:
        T, B, I, H, S = r["shape"]
        us = {name: 1e6 * seconds for name, seconds in r["seconds"].items()}
        print(f"{T:>6} {B:>4} {I:>4} {H:>5} {S:>2} | {r['ratio forward']:>7.2f}x "
              f"{r['ratio train truncated']:>10.2f}x {r['ratio train exact']:>10.2f}x | "
              f"{spread(r['ratio train truncated rounds'])} | "
              f"{r['before / tiny train truncated']:>13.2f}x | "
              f"{us['train truncated ours']:>19.1f} {us['train nn.LSTM']:>8.1f} "
              f"{us['train floor']:>6.1f} {us['train floor parameters']:>6.1f}", flush=True)


def bench_func(repeats, min_time):
    """torch.func: (1) an ensemble of 16 LSTM(2, 4) at T = 1000, B = 1 (stack_module_state, vmap
    of the forward, and of grad for a train step) against one member alone; (2) per-sample
    gradients (vmap of grad) of 64 sequences at T = 100, I = 128, H = 256 against one ordinary
    forward + backward of the batch of 64."""
    from torch.func import functional_call, grad, stack_module_state, vmap

    def loss_of(module):
        def loss(params, x):
            return functional_call(module, params, (x,))[0].square().sum()
        return loss

    torch.manual_seed(0)
    members = [lstm1997.LSTM(2, 4) for _ in range(16)]
    stacked, _ = stack_module_state(members)
    one = {k: v.detach() for k, v in members[0].named_parameters()}
    x = torch.randn(1000, 1, 2)
    loss = loss_of(members[0])
    ensemble_forward = vmap(lambda p, x: functional_call(members[0], p, (x,))[0],
                            in_dims=(0, None))
    ensemble_grad = vmap(grad(loss), in_dims=(0, None))
    tasks = {
        "ensemble forward": lambda: ensemble_forward(stacked, x),
        "one forward": lambda: functional_call(members[0], one, (x,)),
        "ensemble train": lambda: ensemble_grad(stacked, x),
        "one train": lambda: grad(loss)(one, x),
    }
    big = lstm1997.LSTM(128, 256)
    big_params = {k: v.detach() for k, v in big.named_parameters()}
    samples = torch.randn(64, 100, 1, 128)
    batch = samples.squeeze(2).transpose(0, 1).contiguous()  # (T, 64, I)
    per_sample = vmap(grad(loss_of(big)), in_dims=(None, 0))

    def ordinary_backward():
        big.zero_grad(set_to_none=True)
        big(batch)[0].square().sum().backward()

    tasks["per-sample gradients"] = lambda: per_sample(big_params, samples)
    tasks["one backward"] = ordinary_backward
    medians = interleaved_medians(tasks, repeats, min_time)
    return {"seconds": medians,
            "ensemble forward / one": medians["ensemble forward"] / medians["one forward"],
            "ensemble train / one": medians["ensemble train"] / medians["one train"],
            "per-sample gradients / one backward":
                medians["per-sample gradients"] / medians["one backward"]}


def print_func(result):
    print()
    print("torch.func: 16 nets LSTM(2, 4) as one vmapped ensemble (T=1000, B=1) against one net; "
          "per-sample gradients of 64 sequences (T=100, I=128, H=256) against one backward of "
          "the batch")
    ms = {name: 1e3 * seconds for name, seconds in result["seconds"].items()}
    print(f"ensemble forward {ms['ensemble forward']:.2f} ms / one {ms['one forward']:.2f} ms = "
          f"{result['ensemble forward / one']:.2f}x")
    print(f"ensemble train   {ms['ensemble train']:.2f} ms / one {ms['one train']:.2f} ms = "
          f"{result['ensemble train / one']:.2f}x")
    print(f"per-sample gradients {ms['per-sample gradients']:.2f} ms / one backward "
          f"{ms['one backward']:.2f} ms = {result['per-sample gradients / one backward']:.2f}x",
          flush=True)


def print_generic(results):
    print_pass_ratios(results, "generic", "kernels",
                      "the device-generic implementation (ATen ops; LSTM1997_GENERIC=1) against the "
                      "CPU kernels (time generic / time kernels; above 1 the kernels are faster)")


def print_gate_feedback(results):
    print_pass_ratios(results, "with", "without",
                      "gate feedback: the same layer with gate_feedback=True against without "
                      "(time with / time without; above 1 it costs)")


def spread(rounds):
    """round_ratios's figures as table cells: quartile 1-quartile 3, and the fastest rounds'."""
    low, _, high = rounds["quartiles"]
    return f"{f'{low:.1f}-{high:.1f}x':>13} {rounds['fastest']:>7.2f}x"


def print_online(results):
    print()
    print("online learning (OnlineLSTM: forward + gradient every call) against the truncated train step")
    print("net: plain, or the paper's (gate feedback, its squashers) with S cells per block; 1/call "
          "vs trunc over the rounds: its quartiles, and the ratio of each side's fastest round")
    print("each chunk and its loss gradient made before the clock; sliced: one step per call with "
          "x[t:t+1] and ones_like in the timed loop")
    header = (f"{'T':>6} {'B':>4} {'I':>4} {'H':>5} {'net':>9} | {'us/step 1/call':>14} {'10/call':>8} {'truncated':>9} | "
              f"{'1/call vs trunc':>15} {'rounds q1-q3':>13} {'fastest':>8} {'10/call vs trunc':>16} "
              f"{'sliced vs trunc':>15} | "
              f"{'trace MB':>8} {'saved MB trunc':>14}")
    print(header)
    print("-" * len(header))
    for r in results:
        T, B, I, H, S = r["shape"]
        us = {name: 1e6 * v for name, v in r["seconds per step"].items()}
        net = "plain" if S == 0 else f"paper S={S}"
        print(f"{T:>6} {B:>4} {I:>4} {H:>5} {net:>9} | {us['online 1 step per call']:>14.1f} "
              f"{us['online 10 steps per call']:>8.1f} {us['truncated train']:>9.1f} | "
              f"{r['online 1 / truncated']:>14.1f}x {spread(r['online 1 / truncated rounds'])} "
              f"{r['online 10 / truncated']:>15.1f}x "
              f"{r['online 1 sliced in the loop / truncated']:>14.1f}x | "
              f"{r['trace bytes'] / 2**20:>8.2f} {r['saved bytes truncated'] / 2**20:>14.2f}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="three small shapes, fewer repeats")
    parser.add_argument("--shape", type=int, nargs=4, action="append", metavar=("T", "B", "I", "H"),
                        help="time this shape instead (repeatable)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--gate-feedback", action="store_true",
                        help="only the table of gate feedback against none")
    parser.add_argument("--generic", action="store_true",
                        help="only the table of the generic implementation against the CPU kernels")
    parser.add_argument("--online", action="store_true",
                        help="only the table of online learning against the truncated train step")
    parser.add_argument("--paper-layers", action="store_true",
                        help="only the table of the paper's layers against torch.nn.LSTM")
    parser.add_argument("--small-batches", action="store_true",
                        help="only the table of small layers at several batch sizes")
    parser.add_argument("--cuda", action="store_true",
                        help="only the table of the layer on the GPU against torch.nn.LSTM (cuDNN)")
    parser.add_argument("--func", action="store_true",
                        help="only the torch.func table (ensembles, per-sample gradients)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.func:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32 CPU")
        result = bench_func(7, 0.05)
        print_func(result)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"torch": torch.__version__, "threads": torch.get_num_threads(),
                           "func": result}, f, indent=2)
        return result
    # A table alone (its option's name is its key in the JSON): its bench, shapes and printer.
    alone = {"generic": (bench_generic, GENERIC_SHAPES, print_generic),
             "gate_feedback": (bench_gate_feedback, GATE_FEEDBACK_SHAPES, print_gate_feedback),
             "paper_layers": (bench_paper_layer, PAPER_LAYERS, print_paper_layers),
             "small_batches": (bench_small_batch, SMALL_BATCHES, print_small_batches),
             "online": (bench_online, ONLINE_SHAPES, print_online),
             "cuda": (bench_cuda, CUDA_SHAPES, print_cuda)}
    for name, (bench, table_shapes, print_table) in alone.items():
        if getattr(args, name):
            if name == "cuda" and not torch.cuda.is_available():
                parser.error("--cuda needs a CUDA device")
            print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32 "
                  f"{'CUDA' if name == 'cuda' else 'CPU'}")
            results = [bench(*shape, 7, 0.05) for shape in table_shapes]
            print_table(results)
            if args.json:
                with open(args.json, "w") as f:
                    json.dump({"torch": torch.__version__, "threads": torch.get_num_threads(),
                               name: results}, f, indent=2)
            return results
    shapes = args.shape or (QUICK_SHAPES if args.quick else SHAPES)
    # Many short samples, the tasks in turn: a busy phase of a shared host then falls on every task
    # alike instead of on a few long samples of one task.
    repeats, min_time = (5, 0.05) if args.quick or args.shape else (15, 0.1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, float32 CPU")
    print("ratio = nn.LSTM time / lstm1997 time (higher is better for lstm1997); train = forward + backward")
    print("vs GEMMs = our time / the bare GEMMs of the same pass (1.0 = everything but GEMMs free)")
    header = (f"{'T':>6} {'B':>4} {'I':>4} {'H':>5} | {'forward':>8} {'train trunc':>11} {'train exact':>11} | "
              f"{'fwd vs GEMMs':>12} {'trunc vs GEMMs':>14} | {'saved MB ours':>13} {'nn.LSTM':>8} | {'ms/step fwd':>11}")
    print(header)
    print("-" * len(header))
    results = []
    for shape in shapes:
        r = bench_shape(*shape, repeats, min_time)
        results.append(r)
        print(
            f"{shape[0]:>6} {shape[1]:>4} {shape[2]:>4} {shape[3]:>5} | {r['ratio forward']:>7.2f}x "
            f"{r['ratio train truncated']:>10.2f}x {r['ratio train exact']:>10.2f}x | "
            f"{r['ours / bare GEMMs forward']:>12.2f} {r['ours / bare GEMMs train truncated']:>14.2f} | "
            f"{r['saved bytes ours'] / 2**20:>13.1f} {r['saved bytes nn.LSTM'] / 2**20:>8.1f} | "
            f"{1e3 * r['seconds']['forward ours'] / shape[0]:>11.4f}",
            flush=True,
        )
    online = [bench_online(*shape, repeats, min_time)
              for shape in ([(*shape, 0) for shape in args.shape] if args.shape else ONLINE_SHAPES)]
    print_online(online)
    feedback = [bench_gate_feedback(*shape, repeats, min_time)
                for shape in ([(*shape, 1) for shape in args.shape] if args.shape
                              else GATE_FEEDBACK_SHAPES)]
    print_gate_feedback(feedback)
    generic = [bench_generic(*shape, repeats, min_time)
               for shape in ([(*shape, 1) for shape in args.shape] if args.shape
                             else GENERIC_SHAPES)]
    print_generic(generic)
    paper_layers = [] if args.shape else [bench_paper_layer(*shape, repeats, min_time)
                                          for shape in PAPER_LAYERS]
    if paper_layers:
        print_paper_layers(paper_layers)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "threads": torch.get_num_threads(),
                       "results": results, "online": online, "gate_feedback": feedback,
                       "generic": generic, "paper_layers": paper_layers}, f, indent=2)
    return results


if __name__ == "__main__":
    main()
