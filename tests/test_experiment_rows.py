"""The paper's rows (lstm1997.experiments.rows), their report, and runs spread over processes."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from lstm1997.experiments import __main__ as runner
from lstm1997.experiments import report, rows


def experiment_of(row):
    args = runner.parse_args(list(row.argv))
    return args, runner.make_experiment(args, 0)


def test_every_row_of_the_papers_tables_has_one_command():
    """The rows cover every setting the experiments know from the paper, each exactly once."""
    covered = []
    for row in rows.ROWS:
        args, experiment = experiment_of(row)
        assert experiment.paper_key in experiment.paper, row
        assert row.trials >= 5 and args.model == "lstm1997" and args.input_gate_bias is None
        covered.append((args.experiment, experiment.paper_key))
    assert len(covered) == len(set(covered))
    every = {(name, key) for name, cls in runner.EXPERIMENTS.items() for key in cls.paper}
    assert set(covered) == every
    names = [row.name for row in rows.ALL]
    assert len(names) == len(set(names))


def test_the_1000_step_rows_are_there():
    settings = {(row.setting[0], experiment_of(row)[1].paper_key) for row in rows.ROWS}
    assert ("adding", "T=1000") in settings and ("noise-signal", "3a T=1000,N=3") in settings
    assert {("long-lag", f"q=1000,p={p}") for p in (1000, 500, 200, 100, 50)} <= settings


def test_baselines_and_extra_runs_are_labelled():
    for row in rows.BASELINES:
        args, _ = experiment_of(row)
        assert args.model in ("lstm", "rnn") and row.label
        assert row.exp in ("2a", "2c", "4", "6a")
    for row in rows.EXTRA:
        args, _ = experiment_of(row)
        assert args.input_gate_bias in (-5, -3) and "drift" in row.label
        # The paper's columns are those of the row it varies (its setting less the bias).
        (plain,) = [r for r in rows.ROWS if r.setting == row.setting[:len(r.setting)]
                    and row.setting[len(r.setting):][0] == "--input-gate-bias"]
        assert (row.exp, row.paper_trials, row.paper_success, row.paper_sequences) == (
            plain.exp, plain.paper_trials, plain.paper_success, plain.paper_sequences)


def fake_record(row, trial, success, sequences=None, wrong=0.0, **changes):
    args = runner.parse_args(list(row.argv))
    args.__dict__.update(changes)
    _, experiment = experiment_of(row)
    return {"experiment": args.experiment, "setting": experiment.paper_key, "model": args.model,
            "recipe": args.recipe, "trial": trial, "budget": args.budget, "success": success,
            "sequences_until_success": sequences, "fraction_wrong_test": wrong,
            "command": json.loads(json.dumps(runner.command_key(args))), "seconds": 10.0,
            "curve": [[100, 0.5], [200, 0.25]], "paper": experiment.paper[experiment.paper_key],
            "machine": "test machine", "date": "2026-11-30", "gate_feedback": True, "weights": 93}


def test_the_report_counts_only_each_rows_own_command():
    row = rows.BY_NAME["4_T100"]
    records = [fake_record(row, 0, True, 70000, 0.001), fake_record(row, 1, False, wrong=0.5),
               fake_record(row, 2, True, 90000), fake_record(row, 3, True, 1, budget=10)]
    line = next(l for l in report.paper_table(records).splitlines() if l.startswith("| 4 | --T 100 |"))
    cells = [c.strip() for c in line.split("|")[1:-1]]
    assert cells[2:6] == ["3 of 5", "2/3", "80,000 (70,000-90,000)", "0.1670 (0.0000-0.5000)"]
    assert "`python -m lstm1997.experiments adding --T 100 --trials 5 --budget 250000`" in line
    assert "10 trials, no success rate given, 74,000 sequences, test 1/2560" in line
    table = report.paper_table([])
    assert table.count("not run yet") == len(rows.ALL)
    # a trial run again by the same command (into another file): the later record counts
    again = fake_record(row, 1, True, 50000)
    assert [r["success"] for r in report.records_of(row, records + [again])] == [True] * 3


def test_the_report_draws_a_figure_per_experiment(tmp_path):
    pytest.importorskip("matplotlib")
    records = [fake_record(rows.BY_NAME["4_T100"], 0, False),
               fake_record(rows.BY_NAME["6a"], 0, True, 500)]
    made = report.figures(records, str(tmp_path))
    assert [exp for exp, _ in made] == ["4", "6a"]
    assert all(os.path.getsize(path) > 0 for _, path in made)
    assert f"[{made[0][1]}]" in report.render(records, made)


def test_rows_command_line(capsys):
    assert rows.main([]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == len(rows.ALL)
    assert any("adding --T 1000 --trials 5 --budget 2500000 --results" in l for l in printed)
    with pytest.raises(SystemExit):
        rows.main(["--run", "no-such-row"])


def test_options_added_later_keep_older_commands_keys():
    """Records and checkpoints made before --input-gate-bias existed still match their command."""
    assert "input_gate_bias" not in runner.command_key(runner.parse_args(["adding"]))
    key = runner.command_key(runner.parse_args(["adding", "--input-gate-bias", "-5"]))
    assert key["input_gate_bias"] == -5
    assert "jobs" not in runner.command_key(runner.parse_args(["adding", "--jobs", "2"]))


def test_input_gate_bias_sets_the_drift_remedy():
    args = runner.parse_args(["long-lag", "--q", "10", "--p", "10", "--input-gate-bias", "-5"])
    experiment = runner.make_experiment(args, 0)
    net = runner.make_net(experiment, args, 0)
    plain = runner.make_net(experiment, runner.parse_args(["long-lag", "--q", "10", "--p", "10"]), 0)
    assert net.weight_count() == plain.weight_count() + 2 == 6 * 10 + 64 + 2
    assert torch.equal(net.cells.bias_ih_l0.detach()[:2], torch.tensor([-5.0, -5.0]))
    assert torch.equal(net.cells.bias_ih_l0.detach()[2:], torch.zeros(4))
    assert torch.equal(net.cells.weight_ih_l0, plain.cells.weight_ih_l0)
    for argv in (["adding", "--model", "lstm"], ["gradient-flow"]):
        with pytest.raises(SystemExit):
            runner.parse_args(argv + ["--input-gate-bias", "-5"])
    with pytest.raises(SystemExit):
        runner.parse_args(["adding", "--jobs", "0"])


def test_input_gate_bias_of_the_two_sequence_net_shifts_its_input_gate_weights():
    """Exp 2a's net has no bias weights; with one-hot inputs a shift of every input-gate weight is
    the gate of a bias at initialisation, and the paper's weight count stays."""
    args = runner.parse_args(["two-sequence", "--p", "10", "--input-gate-bias", "-3"])
    experiment = runner.make_experiment(args, 0)
    net = runner.make_net(experiment, args, 0)
    plain = runner.make_net(runner.make_experiment(runner.parse_args(["two-sequence", "--p", "10"]),
                                                   0), runner.parse_args(["two-sequence"]), 0)
    assert net.weight_count() == plain.weight_count() == 11 * 12 + 2 * 11
    assert torch.allclose(net.input_gate.detach(), plain.input_gate.detach() - 3.0)
    assert (net.input_gate.detach() < -2.7).all() and (plain.input_gate.detach().abs() <= 0.2).all()
    for name in ("cell_input", "readout"):
        assert torch.equal(getattr(net, name), getattr(plain, name))
    assert not net.cell_added  # still grown as the paper's


def records_without_time(path):
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for record in lines:
        del record["seconds"]
    return sorted(lines, key=lambda r: r["trial"])


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_trials_in_processes_write_the_records_of_one_process_and_resume(tmp_path):
    """--jobs 2 writes the records --jobs 1 writes; killed, its trial processes end with it, and
    the same command started again resumes and ends with the same records."""
    # A trial's training must outlast a few checkpoint intervals however fast the machine: 2,000
    # sequences take about 0.7 s on an idle core (600 took about 0.2 s, under the 0.3 s interval
    # this test had, so on an idle machine no checkpoint was ever written).
    command = [sys.executable, "-m", "lstm1997.experiments", "long-lag", "--q", "10", "--p", "10",
               "--budget", "2000", "--trials", "3", "--quiet", "--checkpoint-every", "0.1"]
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    subprocess.run(command + ["--results", str(one)], check=True, timeout=600)
    process = subprocess.Popen(command + ["--jobs", "2", "--results", str(two)])
    deadline = time.time() + 300
    while (not list(tmp_path.glob("two.jsonl.trial*.checkpoint")) and process.poll() is None
           and time.time() < deadline):
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it wrote a checkpoint"
    workers = [p for child in children(process.pid) for p in [child] + children(child)]
    process.send_signal(signal.SIGKILL)
    process.wait()
    deadline = time.time() + 30
    while any(alive(p) for p in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert workers and not any(alive(p) for p in workers)
    subprocess.run(command + ["--jobs", "2", "--results", str(two)], check=True, timeout=600)
    assert not list(tmp_path.glob("two.jsonl.trial*.checkpoint*"))
    assert records_without_time(two) == records_without_time(one)
