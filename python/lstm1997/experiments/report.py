"""RESULTS.md from the records of python -m lstm1997.experiments.

    python -m lstm1997.experiments.report results.jsonl [more.jsonl ...] [--notes notes.md] > RESULTS.md

One row per (experiment, setting, model, net, recipe, budget), the net being the paper's (gate
feedback) or the one without the gates' recurrent connections, with its number of weights: trials, success rate, mean sequences
until success (over the successful trials), the fraction of test sequences wrong (mean, and per
trial), the test's mean squared error where the experiment reports it, the training error of the
last 100 sequences, the paper's numbers, the mean time per trial and the machine. --notes appends
a hand-written section (the analysis of the runs) after the table.
"""
import json
import statistics
import sys
from collections import OrderedDict

HEADER = """# Results: the paper's experiments, ours beside the paper's

Produced by `python -m lstm1997.experiments.report` from the JSON lines that
`python -m lstm1997.experiments` appends. "Sequences" is the mean number of training sequences
presented until the paper's success criterion held, over the trials that succeeded within the
budget; "paper" gives the paper's success rate and mean sequences until success. "Final train
error" is 1/2 the squared error per target step, averaged over the last 100 training sequences.
"""


def milestones(group) -> str:
    """Mean sequences until each intermediate criterion (e.g. exp 3's ST1) over the trials that
    reached it: " (ST1 5,000 in 3/3)"."""
    names = sorted({name for r in group for name in (r.get("milestones") or {})})
    parts = []
    for name in names:
        reached = [r["milestones"][name] for r in group if name in (r.get("milestones") or {})]
        parts.append(f"{name} {statistics.mean(reached):,.0f} in {len(reached)}/{len(group)}")
    return f" ({'; '.join(parts)})" if parts else ""


def net(record) -> str:
    """The lstm1997 net of a record: with or without gate feedback, and its weights. Records made
    before the option existed (no "gate_feedback" field) ran without it."""
    if record["model"] != "lstm1997":
        return "-"
    if "gate_feedback" not in record:
        return "no gate feedback (earlier net)"
    text = "gate feedback" if record["gate_feedback"] else "no gate feedback"
    return text + (f", {record['weights']} weights" if record.get("weights") else "")


def rows(records):
    groups = OrderedDict()
    for r in records:
        key = (r["experiment"], r["setting"], r["model"], net(r), r["recipe"], r["budget"])
        groups.setdefault(key, []).append(r)
    for (experiment, setting, model, net_text, recipe, budget), group in groups.items():
        successes = [r["sequences_until_success"] for r in group if r["success"]]
        yield {
            "experiment": experiment, "setting": setting, "model": model, "net": net_text,
            "recipe": recipe,
            "trials": len(group), "budget": budget,
            "success": f"{100 * len(successes) / len(group):.0f}%",
            "sequences": (f"{statistics.mean(successes):,.0f}" if successes else "-")
                         + milestones(group),
            "wrong": f"{statistics.mean(r['fraction_wrong_test'] for r in group):.4f} ("
                     + ", ".join(f"{r['fraction_wrong_test']:.4f}" for r in group) + ")",
            "mse": (f"{statistics.mean(r['mse_test'] for r in group):.2e}"
                    if all(r.get("mse_test") is not None for r in group) else "-"),
            "final": (f"{statistics.mean(r['curve'][-1][1] for r in group):.2e}"
                      if all(r["curve"] for r in group) else "-"),
            "paper": group[0]["paper"] or "-",
            "seconds": f"{statistics.mean(r['seconds'] for r in group):,.0f}",
            "machine": f"{group[0]['machine']}, {group[0]['date']}",
        }


def render(records) -> str:
    lines = [HEADER, "| experiment | setting | model | net | recipe | trials | budget | success "
             "| sequences | test fraction wrong: mean (per trial) | test MSE | final train error "
             "| paper | s / trial | machine, date |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows(records):
        lines.append("| " + " | ".join(str(r[k]) for k in (
            "experiment", "setting", "model", "net", "recipe", "trials", "budget", "success", "sequences",
            "wrong", "mse", "final", "paper", "seconds", "machine")) + " |")
    return "\n".join(lines) + "\n"


def load(paths):
    records = []
    for path in paths:
        with open(path) as f:
            records += [json.loads(line) for line in f if line.strip()]
    return records


def main(argv):
    notes = None
    if "--notes" in argv:
        at = argv.index("--notes")
        notes, argv = argv[at + 1], argv[:at] + argv[at + 2:]
    text = render(load(argv))
    if notes:
        with open(notes) as f:
            text += "\n" + f.read()
    return text


if __name__ == "__main__":
    sys.stdout.write(main(sys.argv[1:]))
