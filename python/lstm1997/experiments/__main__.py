"""Runs the paper's experiments with the paper's recipe.

    python -m lstm1997.experiments reber [--cells-per-block 1|2] [--trials N] [--recipe online|sequence] [--model lstm1997|lstm|rnn]
    python -m lstm1997.experiments two-sequence [--variant a|b] [--p 100]   (exp 2a, 2b)
    python -m lstm1997.experiments long-lag [--q 100] [--p 100]      (exp 2c)
    python -m lstm1997.experiments noise-signal [--variant a|b|c] [--T 100] [--N 3]   (exp 3)
    python -m lstm1997.experiments adding [--T 100]                  (exp 4)
    python -m lstm1997.experiments multiplication [--n-seq 140]      (exp 5)
    python -m lstm1997.experiments temporal-order [--variant a|b]    (exp 6)
    python -m lstm1997.experiments gradient-flow [--T 1000] [--plot gradient_flow.png]

Each trial generates its data from the paper's definition (seeded), trains one sequence at a time
with plain gradient steps until the paper's success criterion holds or --budget sequences have been
presented, tests on fresh sequences, prints sequences until success and the fraction wrong beside
the paper's numbers, and appends a record to --results (JSON lines). --plot draws the learning
curve (matplotlib, when installed). python -m lstm1997.experiments.rows gives each row of the
paper's tables its one command; python -m lstm1997.experiments.report turns the records into
RESULTS.md.

The default recipe is the paper's: "online" (an update after every step with a target) for the
tasks with targets at every step (reber, two-sequence); for the tasks with one target at the end
(all others) an update after every step with a target is one update per sequence with the
truncated gradient, which "sequence" computes in one backward pass, so that is their default.
"""
import argparse
import datetime
import json
import os
import platform
import time

import torch

from . import gradient_flow
from .paper_net import MODELS, RECIPES, TRAINERS, PaperNet, squared_error
from .reber import Reber
from .adding import Adding
from .long_lag import LongLag
from .multiplication import Multiplication
from .noise_signal import NoiseSignal
from .temporal_order import TemporalOrder
from .two_sequence import TwoSequence

EXPERIMENTS = {"reber": Reber, "two-sequence": TwoSequence, "long-lag": LongLag,
               "noise-signal": NoiseSignal, "adding": Adding, "multiplication": Multiplication,
               "temporal-order": TemporalOrder}
# Each experiment's own options, from the command line (None: the paper's value).
OPTIONS = {"two-sequence": ["p", "variant"], "long-lag": ["q", "p"], "noise-signal": ["variant", "T", "N"],
           "adding": ["T"], "multiplication": ["T", "n_seq"], "temporal-order": ["variant"],
           "reber": ["cells_per_block"]}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lstm1997.experiments",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("experiment", choices=sorted(EXPERIMENTS) + ["gradient-flow"])
    parser.add_argument("--trials", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="seed of the first trial")
    parser.add_argument("--recipe", choices=RECIPES, default=None,
                        help="online: update after every step with a target; sequence: once per "
                             "sequence (default: the paper's, see above)")
    parser.add_argument("--model", choices=MODELS, default="lstm1997",
                        help="lstm1997, or a baseline trained per sequence with BPTT")
    parser.add_argument("--alpha", type=float, default=None, help="learning rate (default: the paper's)")
    parser.add_argument("--p", type=int, default=None, help="two-sequence: the time lag p; "
                        "long-lag: the number of distractor symbols")
    parser.add_argument("--q", type=int, default=None, help="long-lag: the minimal time lag")
    parser.add_argument("--T", type=int, default=None,
                        help="sequence length (noise-signal, adding, multiplication; "
                             "gradient-flow: 1000)")
    parser.add_argument("--N", type=int, default=None, help="noise-signal: informative values")
    parser.add_argument("--variant", default=None,
                        help="two-sequence: a|b; noise-signal: a|b|c; temporal-order: a|b")
    parser.add_argument("--n-seq", dest="n_seq", type=int, default=None,
                        help="multiplication: stop when fewer of the last 2,000 are wrong")
    parser.add_argument("--cells-per-block", dest="cells_per_block", type=int, default=None,
                        help="reber: 1 (4 blocks of 1 cell) or 2 (3 blocks of 2 cells)")
    parser.add_argument("--gate-feedback", dest="gate_feedback", choices=("on", "off"),
                        default="on", help="on (the paper's network): cells and gates also see "
                        "the gate outputs of t-1; off: the cell outputs only")
    parser.add_argument("--input-gate-bias", dest="input_gate_bias", type=float, default=None,
                        help="an extra run outside the paper's set-up: every block's input gate "
                        "starts with this bias (the paper's remedy for state drift), learned like "
                        "the other weights, in nets whose input gates have none or a drawn "
                        "one (two-sequence, whose net has no bias weights: every input-gate "
                        "weight is shifted by it, the same gate at initialisation for its "
                        "one-hot inputs)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="trials run in this many processes at once, one thread each")
    parser.add_argument("--budget", type=int, default=100_000, help="most training sequences per trial")
    parser.add_argument("--results", default="results.jsonl", help="JSON lines file to append to")
    parser.add_argument("--checkpoint-every", dest="checkpoint_every", type=float, default=300.0,
                        help="seconds between checkpoints of a trial, kept beside --results until "
                             "its record is written: the same command started again after a kill "
                             "resumes from the last one, and skips the trials already recorded")
    parser.add_argument("--plot", default=None, help="learning curve PNG")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs: expected at least 1, got {args.jobs}")
    if args.input_gate_bias is not None and (args.model != "lstm1997"
                                             or args.experiment == "gradient-flow"):
        parser.error("--input-gate-bias: only for the paper's memory cell nets (model lstm1997; "
                     "not gradient-flow)")
    if args.experiment in EXPERIMENTS and args.recipe is None:
        every_step = getattr(EXPERIMENTS[args.experiment], "targets_every_step", True)
        args.recipe = "online" if every_step else "sequence"
    if args.model != "lstm1997":
        args.recipe = "sequence"  # baselines learn per sequence, with BPTT
    return args


def make_experiment(args, seed):
    options = {} if args.alpha is None else {"alpha": args.alpha}
    for name in OPTIONS.get(args.experiment, []):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    return EXPERIMENTS[args.experiment](seed, **options)


def progress(total, quiet):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return None if quiet else tqdm(total=total, unit="seq", leave=False)


def run_trial(args, trial):
    # The paper's nets have a handful of cells: intra-op threads only add synchronisation (and
    # stall badly when another process holds a core), so a trial runs on one thread.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_and_test(args, trial)
    finally:
        torch.set_num_threads(threads)


def make_net(experiment, args, seed):
    """The experiment's own net where the paper's differs from PaperNet (exp 2a), else PaperNet."""
    if hasattr(experiment, "make_net") and args.model == "lstm1997":
        return experiment.make_net(seed, input_gate_bias=args.input_gate_bias)
    options = experiment.net_options()
    if args.input_gate_bias is not None:
        options["input_gate_bias"] = [args.input_gate_bias] * options["blocks"]
    return PaperNet(**options, model=args.model, seed=seed, gate_feedback=args.gate_feedback == "on")


def trainer(net, recipe):
    """A net that is not a PaperNet brings its own training step per recipe (a method, called as
    train(net, inputs, targets, mask, alpha) like the functions of TRAINERS)."""
    return getattr(type(net), "train_" + recipe, None) or TRAINERS[recipe]


# Options added after records were made, with the default that leaves a trial as it was: left out
# of the command key at that default, so older records and checkpoints still match their command.
LATER_OPTIONS = {"input_gate_bias": None}


def command_key(args):
    """What identifies a run's trials: every argument that changes what a trial computes."""
    ignored = {"trials", "results", "plot", "quiet", "checkpoint_every", "jobs"}
    return {name: value for name, value in sorted(vars(args).items())
            if name not in ignored and not (name in LATER_OPTIONS and value == LATER_OPTIONS[name])}


def checkpoint_path(args, trial):
    return f"{args.results}.trial{trial}.checkpoint"


def save_checkpoint(path, state):
    """Written beside the results and renamed into place: a kill leaves the old or the new one."""
    partial = path + ".partial"
    torch.save(state, partial)
    os.replace(partial, path)


def load_checkpoint(args, trial):
    """The state a killed run of the same command left for this trial, or None."""
    path = checkpoint_path(args, trial)
    if not os.path.exists(path):
        return None
    state = torch.load(path, weights_only=False)
    if state["command"] != command_key(args):
        raise ValueError(f"{path}: a checkpoint of another command ({state['command']}); remove "
                         f"it or pass another --results")
    return state


def recorded_trials(args):
    """trial -> record, for the records of this command already in --results."""
    if not os.path.exists(args.results):
        return {}
    key = json.loads(json.dumps(command_key(args)))  # as the records hold it
    with open(args.results) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return {r["trial"]: r for r in records if r.get("command") == key}


def train_and_test(args, trial):
    """One trial. Every --checkpoint-every seconds the whole state of the trial (the net with its
    traces, the experiment with its random generator, its place in the data and its records, the
    torch generator, the learning curve) goes to a checkpoint beside --results; started again
    after a kill, the same command continues from there, and the trial ends with the record an
    uninterrupted run would have written (all but the wall-clock "seconds")."""
    seed = args.seed + trial
    state = load_checkpoint(args, trial)
    if state is None:
        torch.manual_seed(seed)
        experiment = make_experiment(args, seed)
        net = make_net(experiment, args, seed)
        state = {"command": command_key(args), "experiment": experiment, "net": net,
                 "sequence": 0, "curve": [], "window": [], "until_success": None, "seconds": 0.0}
    else:
        torch.set_rng_state(state["torch_rng"])
        print(f"{args.experiment} trial {trial}: resuming after {state['sequence']} sequences",
              flush=True)
    experiment, net = state["experiment"], state["net"]
    curve, window, until_success = state["curve"], state["window"], state["until_success"]
    train = trainer(net, args.recipe)
    bar = progress(args.budget, args.quiet)
    start = last_checkpoint = time.perf_counter()
    for sequence in range(state["sequence"] + 1, args.budget + 1):
        check_run_alive()
        if time.perf_counter() - last_checkpoint >= args.checkpoint_every:
            state.update(sequence=sequence - 1, curve=curve, window=window,
                         seconds=state["seconds"] + time.perf_counter() - start,
                         torch_rng=torch.get_rng_state())
            start = last_checkpoint = time.perf_counter()
            save_checkpoint(checkpoint_path(args, trial), state)
        inputs, targets, mask = experiment.training_sequence()
        outputs = train(net, inputs, targets, mask, experiment.alpha)
        window.append(squared_error(outputs, targets, mask).item() / max(1, int(mask.sum())))
        if len(window) == 100:
            curve.append((sequence, sum(window) / len(window)))
            window = []
        if bar is not None:
            bar.update(1)
        elif not args.quiet and sequence % 1000 == 0:
            print(f"  {sequence} sequences, mean error {curve[-1][1]:.4f}", flush=True)
        if sequence % experiment.check_every == 0 and experiment.solved(net, outputs):
            counted = getattr(experiment, "sequences_until_success", None)
            until_success = counted(sequence) if counted else sequence
            break
    if bar is not None:
        bar.close()
    record = {
        "experiment": args.experiment, "setting": experiment.paper_key, "model": args.model,
        "recipe": args.recipe, "alpha": experiment.alpha, "trial": trial, "seed": seed,
        "command": command_key(args),
        "weights": net.weight_count(), "gate_feedback": getattr(net, "gate_feedback", False),
        "budget": args.budget, "success": until_success is not None,
        "sequences_until_success": until_success, "fraction_wrong_test": experiment.test(net),
        "paper": experiment.paper.get(experiment.paper_key),
        "mse_test": getattr(experiment, "test_mse", None),
        "milestones": getattr(experiment, "milestones", None),
        "seconds": round(state["seconds"] + time.perf_counter() - start, 1), "curve": curve,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "date": datetime.date.today().isoformat(),
    }
    return record


def plot(records, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    figure, axes = plt.subplots(figsize=(7, 4))
    for r in records:
        if r["curve"]:
            x, y = zip(*r["curve"])
            axes.plot(x, y, label=f"{r['model']} {r['recipe']} trial {r['trial']}")
    axes.set_xlabel("training sequences")
    axes.set_ylabel("error per target step, 1/2 sum of squares\n(mean over 100 sequences)")
    axes.set_yscale("log")
    axes.set_title(f"{records[0]['experiment']} ({records[0]['setting']})")
    if axes.get_legend_handles_labels()[0]:  # no curve below 100 sequences
        axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"learning curve: {path}")


def run_trial_in_worker(args, trial, parent):
    """run_trial in a process of --jobs: it ends when the run that started it is gone (checked
    before every sequence, so before every checkpoint), rather than going on writing the trial's
    checkpoint beside the run started again after a kill."""
    global _RUN_PROCESS
    _RUN_PROCESS = parent
    return run_trial(args, trial)


_RUN_PROCESS = None  # in a process of --jobs: the run's process


def check_run_alive():
    if _RUN_PROCESS is not None and os.getppid() != _RUN_PROCESS:
        os._exit(1)


def run_trials(args, trials):
    """Yields the record of each trial as it ends: one after another, or in --jobs processes.
    Trials are independent and each runs on one thread, so processes, not threads, spread them
    over the cores; the spawn start method gives each a fresh interpreter and torch."""
    if args.jobs == 1 or len(trials) < 2:
        for trial in trials:
            yield run_trial(args, trial)
        return
    import importlib
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    # Run as `python -m`, this file is the module "__main__", whose functions a spawned process
    # cannot find by that name: hand it the same functions from the module imported by its name.
    this = importlib.import_module("lstm1997.experiments.__main__")
    with ProcessPoolExecutor(max_workers=min(args.jobs, len(trials)),
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(this.run_trial_in_worker, args, t, os.getpid()) for t in trials]
        for future in as_completed(futures):
            yield future.result()


def main(argv=None):
    args = parse_args(argv)
    if args.experiment == "gradient-flow":
        return gradient_flow.run(args.T or 1000, args.plot, args.quiet)
    recorded = recorded_trials(args)  # a run of this command stopped after these trials
    records = [recorded[trial] for trial in range(args.trials) if trial in recorded]
    for record in run_trials(args, [t for t in range(args.trials) if t not in recorded]):
        trial = record["trial"]
        records.append(record)
        with open(args.results, "a") as f:
            f.write(json.dumps(record) + "\n")
        if os.path.exists(checkpoint_path(args, trial)):
            os.remove(checkpoint_path(args, trial))
        found = (f"success after {record['sequences_until_success']} sequences"
                 if record["success"] else f"no success within {args.budget} sequences")
        print(f"{args.experiment} {record['setting']} {args.model}/{args.recipe} trial {trial}: "
              f"{found}, {100 * record['fraction_wrong_test']:.2f}% of test sequences wrong, "
              f"{record['seconds']} s (paper: {record['paper']})", flush=True)
    records.sort(key=lambda record: record["trial"])
    if args.plot:
        plot(records, args.plot)
    return records


if __name__ == "__main__":
    main()
