"""Every row of the paper's result tables (exp 1 to 6), the one command that reproduces it, and the paper's figures.

    python -m lstm1997.experiments.rows                 # the commands, one per row
    python -m lstm1997.experiments.rows --run NAME ...  # run rows' commands, records in docs/runs/

A row's command is `python -m lstm1997.experiments EXPERIMENT ARGS`: the paper's network,
initialisation, learning rate and stopping rule are each experiment's defaults; ARGS give the
row's setting, the number of trials and the budget (most training sequences per trial). Its
records go to `docs/runs/NAME.jsonl`, the report matches records to rows by their command, so a
record counts for a row only if it was made by exactly that command.

Trials: the paper's number is 10 to 30 per row; on the development machine (2 cores) every row
gets 5, the least the issue asks for, and a row may show fewer while its run is under way. Budgets:
the paper runs exp 2 up to 5 million sequences and gives no budget for the others; ours is about
three times the paper's mean sequences until success (for exp 4 at T = 1000, above the paper's
largest, 2,020,000), so a trial that learns at the paper's pace has room, and one that does not
ends in hours, not days. `BASELINES` are torch.nn.LSTM and torch.nn.RNN with the same recipe on the
rows where the paper names its competitors' failure; `EXTRA` are labelled runs outside the paper's
set-up (2c with the paper's own drift remedy).
"""
import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Optional, Tuple


@dataclass(frozen=True)
class Row:
    name: str                   # file stem of its records, docs/runs/NAME.jsonl
    exp: str                    # the paper's experiment (1, 2a ... 6b)
    setting: Tuple[str, ...]    # EXPERIMENT and the options that make the row's setting
    trials: int
    budget: int                 # most training sequences per trial
    paper_trials: int           # trials behind the paper's figures
    paper_success: Optional[str]  # the paper's success rate, None where it gives none
    paper_sequences: str        # the paper's mean sequences until success (range where given)
    paper_test: str             # the paper's test figure ("-" where it gives none)
    label: str = ""             # what sets a baseline or extra run apart from the paper's row

    @property
    def argv(self) -> Tuple[str, ...]:
        return self.setting + ("--trials", str(self.trials), "--budget", str(self.budget))

    def command(self) -> str:
        return "python -m lstm1997.experiments " + " ".join(self.argv)


def _row(name, exp, setting, trials, budget, paper_trials, success, sequences, test="-",
         label=""):
    return Row(name, exp, tuple(setting.split()), trials, budget, paper_trials, success,
               sequences, test, label)


ROWS = (
    # Exp 1 (table 1): 30 trials per row (3 train/test pairs x 10 initialisations).
    _row("1_4x1_a0.1", "1", "reber --cells-per-block 1 --alpha 0.1", 5, 100000,
         30, "100%", "39,740"),
    _row("1_3x2_a0.1", "1", "reber --cells-per-block 2 --alpha 0.1", 5, 60000,
         30, "100%", "21,730"),
    _row("1_3x2_a0.2", "1", "reber --cells-per-block 2 --alpha 0.2", 5, 40000,
         30, "97%", "14,060"),
    _row("1_4x1_a0.5", "1", "reber --cells-per-block 1 --alpha 0.5", 5, 30000,
         30, "97%", "9,500"),
    _row("1_3x2_a0.5", "1", "reber --cells-per-block 2 --alpha 0.5", 5, 30000,
         30, "100%", "8,440 (3,800-24,100)"),
    # Exp 2a and 2b, 18 trials each, budget 5 million sequences in the paper.
    _row("2a", "2a", "two-sequence --variant a --p 100", 5, 100000,
         18, "100%", "5,040"),
    _row("2b", "2b", "two-sequence --variant b --p 100", 5, 100000,
         18, "100%", "5,680"),
    # Exp 2c (table 3), 20 trials per pair; the paper gives mean sequences only.
    _row("2c_q50_p50", "2c", "long-lag --q 50 --p 50", 5, 100000,
         20, None, "30,000"),
    _row("2c_q100_p100", "2c", "long-lag --q 100 --p 100", 5, 100000,
         20, None, "31,000"),
    _row("2c_q200_p200", "2c", "long-lag --q 200 --p 200", 5, 100000,
         20, None, "33,000"),
    _row("2c_q500_p500", "2c", "long-lag --q 500 --p 500", 5, 120000,
         20, None, "38,000"),
    _row("2c_q1000_p1000", "2c", "long-lag --q 1000 --p 1000", 5, 150000,
         20, None, "49,000"),
    _row("2c_q1000_p500", "2c", "long-lag --q 1000 --p 500", 5, 150000,
         20, None, "49,000"),
    _row("2c_q1000_p200", "2c", "long-lag --q 1000 --p 200", 5, 225000,
         20, None, "75,000"),
    _row("2c_q1000_p100", "2c", "long-lag --q 1000 --p 100", 5, 400000,
         20, None, "135,000"),
    _row("2c_q1000_p50", "2c", "long-lag --q 1000 --p 50", 5, 600000,
         20, None, "203,000"),
    # Exp 3a and 3b, 10 trials per row; sequences until ST1 / ST2, fraction of 2,560 wrong.
    _row("3a_T100_N3", "3a", "noise-signal --variant a --T 100 --N 3", 5, 150000,
         10, None, "ST1 27,380 / ST2 39,850", "0.000195"),
    _row("3a_T100_N1", "3a", "noise-signal --variant a --T 100 --N 1", 5, 200000,
         10, None, "ST1 58,370 / ST2 64,330", "0.000117"),
    _row("3a_T1000_N3", "3a", "noise-signal --variant a --T 1000 --N 3", 5, 1500000,
         10, None, "ST1 446,850 / ST2 452,460", "0.000078"),
    _row("3b_T100_N3", "3b", "noise-signal --variant b --T 100 --N 3", 5, 150000,
         10, None, "ST1 41,740 / ST2 43,250", "0.00828"),
    _row("3b_T100_N1", "3b", "noise-signal --variant b --T 100 --N 1", 5, 250000,
         10, None, "ST1 74,950 / ST2 78,430", "0.01500"),
    _row("3b_T1000_N1", "3b", "noise-signal --variant b --T 1000 --N 1", 5, 1500000,
         10, None, "ST1 481,060 / ST2 485,080", "0.01207"),
    # Exp 3c, 10 trials per row.
    _row("3c_T100_N3", "3c", "noise-signal --variant c --T 100 --N 3", 5, 800000,
         10, None, "269,650", "0.00558, mean difference 0.014"),
    _row("3c_T100_N1", "3c", "noise-signal --variant c --T 100 --N 1", 5, 1700000,
         10, None, "565,640", "0.00441, mean difference 0.012"),
    # Exp 4, 10 trials per row.
    _row("4_T100", "4", "adding --T 100", 5, 250000,
         10, None, "74,000", "1/2560"),
    _row("4_T500", "4", "adding --T 500", 5, 650000,
         10, None, "209,000", "0/2560"),
    _row("4_T1000", "4", "adding --T 1000", 5, 2500000,
         10, None, "853,000 (370,000-2,020,000)", "1/2560"),
    # Exp 5, 10 trials per row (the paper's MSE on the test set in the last column).
    _row("5_n140", "5", "multiplication --n-seq 140", 5, 1500000,
         10, None, "482,000", "139/2560, MSE 0.0223"),
    _row("5_n13", "5", "multiplication --n-seq 13", 5, 3500000,
         10, None, "1,273,000", "14/2560, MSE 0.0139"),
    # Exp 6, 20 (6a) and 10 (6b) trials.
    _row("6a", "6a", "temporal-order --variant a", 5, 100000,
         20, None, "31,390", "1/2560"),
    _row("6b", "6b", "temporal-order --variant b", 5, 1700000,
         10, None, "571,100", "2/2560"),
)

# The paper's competitors fail on these rows (2a: RTRL, BPTT; 2c, 4, 6a: the gradient-based
# methods it tried); here torch.nn.LSTM (forget gate) and torch.nn.RNN (tanh) learn with the same
# recipe, one plain gradient step per sequence with their own full gradient (BPTT).
_PAPER = {row.name: row for row in ROWS}
BASELINES = tuple(
    Row(f"{name}_{model}", _PAPER[name].exp, _PAPER[name].setting + ("--model", model), 3, budget,
        _PAPER[name].paper_trials, _PAPER[name].paper_success, _PAPER[name].paper_sequences,
        _PAPER[name].paper_test, label=f"torch.nn.{'LSTM' if model == 'lstm' else 'RNN'}, BPTT")
    for name, budget in (("2a", 100000), ("2c_q100_p100", 100000), ("4_T100", 250000),
                         ("6a", 100000))
    for model in ("lstm", "rnn"))


def _drift_remedy(name: str, bias: str, label: str, suffix: str = "") -> Row:
    """Row NAME run with --input-gate-bias BIAS: a labelled extra run beside the paper's row, with
    that row's paper columns."""
    row = _PAPER[name]
    return Row(f"{name}_drift_remedy{suffix}", row.exp, row.setting + ("--input-gate-bias", bias),
               5, row.budget, row.paper_trials, row.paper_success, row.paper_sequences, "-",
               label=label)


# Outside the paper's set-up, labelled as such: 2c with the paper's own remedy for state drift (a
# negative input-gate bias; ../shared/paper/cell.md measures -5 as removing the drift at
# initialisation with gate feedback), which the paper's 2c net (no biases at all) does not have.
EXTRA = tuple(
    _drift_remedy(name, "-5", "the paper's drift remedy, which its 2c net (no biases) does not have")
    for name in ("2c_q100_p100", "2c_q1000_p1000")) + (
    # A milder bias: -5 shuts the gates so far (sigmoid(-5) = 0.007) that little error reaches
    # them (docs/results_notes.md, first pass).
    _drift_remedy("2c_q100_p100", "-3",
                  "a milder drift remedy (input-gate bias -3), outside the paper's set-up",
                  suffix="_bias3"),) + tuple(
    # Exp 2a/2b's net as written saturates its x and y outputs at 0 within about 100 sequences of
    # its cell's addition (docs/results_notes.md, sixth pass): at the paper's initial weights the
    # cell adds about 0.25 a step and nothing takes it away. Its gate has no bias weight, so the
    # remedy shifts the input-gate weights instead (--input-gate-bias on two-sequence).
    _drift_remedy(name, "-3",
                  "the paper's drift remedy (input gate biased to -3), outside its 2a/2b set-up")
    for name in ("2a", "2b"))

ALL = ROWS + BASELINES + EXTRA
BY_NAME = {row.name: row for row in ALL}


def results_path(row: Row, directory: str = os.path.join("docs", "runs")) -> str:
    return os.path.join(directory, row.name + ".jsonl")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lstm1997.experiments.rows",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--run", nargs="+", metavar="NAME", default=None,
                        help="run these rows' commands one after another (resumes stopped runs)")
    parser.add_argument("--directory", default=os.path.join("docs", "runs"))
    parser.add_argument("--jobs", type=int, default=1, help="processes per command (trials)")
    args = parser.parse_args(argv)
    if args.run is None:
        for row in ALL:
            print(f"{row.name:32s} {row.command()} --results {results_path(row, args.directory)}")
        return 0
    unknown = [name for name in args.run if name not in BY_NAME]
    if unknown:
        parser.error(f"--run: unknown rows {unknown}; the rows are {list(BY_NAME)}")
    os.makedirs(args.directory, exist_ok=True)
    for name in args.run:
        row = BY_NAME[name]
        command = [sys.executable, "-m", "lstm1997.experiments", *row.argv, "--quiet",
                   "--jobs", str(args.jobs), "--results", results_path(row, args.directory)]
        print(" ".join(command[1:]), flush=True)
        subprocess.run(command, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
