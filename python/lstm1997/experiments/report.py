"""RESULTS.md from the records of python -m lstm1997.experiments.

    python -m lstm1997.experiments.report results.jsonl [more.jsonl ...] [--notes notes.md]
        [--figures DIRECTORY] > RESULTS.md

First one line per row of the paper's tables (lstm1997.experiments.rows: the paper's rows, then
the baselines and the labelled extra runs), from the records that row's own command made: ours
beside the paper's (trials, success rate, mean sequences until success with their range, test
error), the time per trial, the machine, and the command. --figures draws one figure per
experiment there with every trial's learning curve, and links them. Then, for every record, one
row per (experiment, setting, model, net, recipe, budget), the net being the paper's (gate
feedback) or the one without the gates' recurrent connections, with its number of weights: trials, success rate, mean sequences
until success (over the successful trials), the fraction of test sequences wrong (mean, and per
trial), the test's mean squared error where the experiment reports it, the training error of the
last 100 sequences, the paper's numbers, the mean time per trial and the machine. --notes appends
a hand-written section (the analysis of the runs) after the table.
"""
import json
import os
import statistics
import sys
from collections import OrderedDict

from . import rows as paper_rows

HEADER = """# Results: the paper's experiments, ours beside the paper's

Produced by `python -m lstm1997.experiments.report docs/results.jsonl docs/runs/*.jsonl --notes
docs/results_notes.md --figures docs/figures > RESULTS.md` from the JSON lines that
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
    bias = (record.get("command") or {}).get("input_gate_bias")
    if bias is not None:
        text += f", input-gate bias {bias:g} (drift remedy)"
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


def row_key(row):
    """The command key of a row's records, as the records hold it."""
    from .__main__ import command_key, parse_args
    return json.loads(json.dumps(command_key(parse_args(list(row.argv)))))


def records_of(row, records):
    """The records of the row's command, one per trial: where a trial was run again (by the same
    command into another file), the later record in `records`."""
    key = row_key(row)
    by_trial = {r["trial"]: r for r in records if r.get("command") == key}
    return [by_trial[trial] for trial in sorted(by_trial)]


def sequences_text(values) -> str:
    if not values:
        return "-"
    spread = f" ({min(values):,}-{max(values):,})" if len(values) > 1 else ""
    return f"{statistics.mean(values):,.0f}{spread}"


def paper_row_line(row, group) -> str:
    """One line of the paper's table, ours beside the paper's."""
    paper_success = row.paper_success or "no success rate given"
    paper = (f"{row.paper_trials} trials, {paper_success}, {row.paper_sequences} sequences"
             + (f", test {row.paper_test}" if row.paper_test != "-" else ""))
    if not group:
        ours = ["not run yet"] + ["-"] * 4
    else:
        successes = [r["sequences_until_success"] for r in group if r["success"]]
        wrong = [r["fraction_wrong_test"] for r in group]
        ours = [f"{len(group)} of {row.trials}",
                f"{len(successes)}/{len(group)}" + milestones(group),
                sequences_text(successes),
                f"{statistics.mean(wrong):.4f} ({min(wrong):.4f}-{max(wrong):.4f})",
                f"{statistics.mean(r['seconds'] for r in group):,.0f}"]
    setting = " ".join(row.setting[1:]) + (f": {row.label}" if row.label else "")
    cells = [row.exp, setting, *ours, f"{row.budget:,}", paper, f"`{row.command()}`"]
    return "| " + " | ".join(cells) + " |"


PAPER_HEADER = """## The paper's rows

One line per row of the paper's tables, from the records of that line's command only (records in
`docs/runs/`). Success: trials that met the paper's stopping rule within the budget; sequences:
the mean (and range) of training sequences until it held, over those trials; test: the fraction
of the final test's sequences wrong, mean (range) over the trials. Each trial runs on one thread.

| exp | setting | trials | success | sequences until success | test fraction wrong | s / trial | budget | paper | command |
|---|---|---|---|---|---|---|---|---|---|"""


def paper_table(records) -> str:
    lines = [PAPER_HEADER]
    for title, table in ((None, paper_rows.ROWS),
                         ("Baselines: torch.nn.LSTM and torch.nn.RNN with the same recipe (one "
                          "gradient step per sequence, full BPTT), where the paper names its "
                          "competitors' failure", paper_rows.BASELINES),
                         ("Extra runs, outside the paper's set-up", paper_rows.EXTRA)):
        if title:
            lines += ["", f"### {title}", "", *PAPER_HEADER.splitlines()[-2:]]
        lines += [paper_row_line(row, records_of(row, records)) for row in table]
    machines = sorted({f"{r['machine']}" for row in paper_rows.ALL for r in records_of(row, records)})
    if machines:
        lines += ["", "Machines: " + "; ".join(machines) + "."]
    return "\n".join(lines) + "\n"


def figures(records, directory) -> list:
    """One PNG per experiment: every trial's learning curve, one colour per row. Returns
    (experiment, path) for the experiments that have curves."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    os.makedirs(directory, exist_ok=True)
    made = []
    for exp in OrderedDict.fromkeys(row.exp for row in paper_rows.ALL):
        drawn = [(row, records_of(row, records)) for row in paper_rows.ALL if row.exp == exp]
        drawn = [(row, group) for row, group in drawn if any(r["curve"] for r in group)]
        if not drawn:
            continue
        figure, axes = plt.subplots(figsize=(7, 4))
        for colour, (row, group) in enumerate(drawn):
            for i, r in enumerate(group):
                if r["curve"]:
                    x, y = zip(*r["curve"])
                    label = row.name if i == 0 else None
                    axes.plot(x, y, color=f"C{colour % 10}", linewidth=0.8, label=label)
        axes.set_xlabel("training sequences")
        axes.set_ylabel("error per target step, 1/2 sum of squares\n(mean over 100 sequences)")
        axes.set_yscale("log")
        axes.set_title(f"Exp {exp}: every trial of every row")
        axes.legend(fontsize=6)
        figure.tight_layout()
        path = os.path.join(directory, f"exp_{exp}.png")
        figure.savefig(path, dpi=110)
        plt.close(figure)
        made.append((exp, path))
    return made


def render(records, figure_paths=()) -> str:
    lines = [HEADER, paper_table(records)]
    if figure_paths:
        lines += ["## Learning curves", ""]
        lines += [f"- Exp {exp}: [{path}]({path})" for exp, path in figure_paths]
        lines.append("")
    lines += ["## Every record", "",
              "All records, the earlier and exploratory runs included, grouped by command "
              "settings and budget.", "",
              "| experiment | setting | model | net | recipe | trials | budget | success "
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
    notes = figure_directory = None
    if "--notes" in argv:
        at = argv.index("--notes")
        notes, argv = argv[at + 1], argv[:at] + argv[at + 2:]
    if "--figures" in argv:
        at = argv.index("--figures")
        figure_directory, argv = argv[at + 1], argv[:at] + argv[at + 2:]
    records = load(argv)
    made = figures(records, figure_directory) if figure_directory else []
    text = render(records, made)
    if notes:
        with open(notes) as f:
            text += "\n" + f.read()
    return text


if __name__ == "__main__":
    sys.stdout.write(main(sys.argv[1:]))
