"""RESULTS.md from the records of python -m lstm1997.experiments.

    python -m lstm1997.experiments.report results.jsonl [more.jsonl ...] > RESULTS.md

One row per (experiment, setting, model, recipe): trials, success rate, mean sequences until
success (over the successful trials), mean fraction of test sequences wrong, the paper's numbers,
the mean time per trial and the machine.
"""
import json
import statistics
import sys
from collections import OrderedDict

HEADER = """# Results: the paper's experiments, ours beside the paper's

Produced by `python -m lstm1997.experiments.report` from the JSON lines that
`python -m lstm1997.experiments` appends. "Sequences" is the mean number of training sequences
presented until the paper's success criterion held, over the trials that succeeded within the
budget; "paper" gives the paper's success rate and mean sequences until success.
"""


def rows(records):
    groups = OrderedDict()
    for r in records:
        key = (r["experiment"], r["setting"], r["model"], r["recipe"], r["budget"])
        groups.setdefault(key, []).append(r)
    for (experiment, setting, model, recipe, budget), group in groups.items():
        successes = [r["sequences_until_success"] for r in group if r["success"]]
        yield {
            "experiment": experiment, "setting": setting, "model": model, "recipe": recipe,
            "trials": len(group), "budget": budget,
            "success": f"{100 * len(successes) / len(group):.0f}%",
            "sequences": f"{statistics.mean(successes):,.0f}" if successes else "-",
            "wrong": f"{statistics.mean(r['fraction_wrong_test'] for r in group):.4f}",
            "paper": group[0]["paper"] or "-",
            "seconds": f"{statistics.mean(r['seconds'] for r in group):,.0f}",
            "machine": group[0]["machine"],
        }


def render(records) -> str:
    lines = [HEADER, "| experiment | setting | model | recipe | trials | budget | success | sequences "
             "| test fraction wrong | paper | s / trial | machine |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows(records):
        lines.append("| " + " | ".join(str(r[k]) for k in (
            "experiment", "setting", "model", "recipe", "trials", "budget", "success", "sequences",
            "wrong", "paper", "seconds", "machine")) + " |")
    return "\n".join(lines) + "\n"


def load(paths):
    records = []
    for path in paths:
        with open(path) as f:
            records += [json.loads(line) for line in f if line.strip()]
    return records


if __name__ == "__main__":
    sys.stdout.write(render(load(sys.argv[1:])))
