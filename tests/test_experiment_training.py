"""Training on the paper's experiments: the paper's network and its two recipes (online and per
sequence), the stopping rules, the runner and the report (smoke runs), learning-curve plots, the
demo, and short runs in which the nets learn (long-lag tasks included)."""
import json

import pytest
import torch

from lstm1997 import demo
from lstm1997.experiments import __main__ as runner
from lstm1997.experiments import report
from lstm1997.experiments.adding import Adding, AddingModel, adding_batch, fraction_correct
from lstm1997.experiments.final_target import final_target_task
from lstm1997.experiments.long_lag import LongLag
from lstm1997.experiments.multiplication import Multiplication
from lstm1997.experiments.noise_signal import NoiseSignal
from lstm1997.experiments.paper_net import PaperNet, squared_error, train_online, train_sequence
from lstm1997.experiments.reber import Reber
from lstm1997.experiments.temporal_order import TemporalOrder
from lstm1997.experiments.two_sequence import TwoSequence


@pytest.mark.parametrize("truncate", [True, False])
def test_adding_problem_loss_falls(truncate):
    torch.manual_seed(0)
    data = torch.Generator().manual_seed(0)
    model = AddingModel(hidden_size=16, truncate=truncate)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    test_inputs, test_targets, test_lengths = adding_batch(500, 20, torch.Generator().manual_seed(1))

    def test_mse():
        with torch.no_grad():
            return (model(test_inputs, test_lengths) - test_targets).pow(2).mean().item()

    before = test_mse()
    for _ in range(400):
        inputs, targets, lengths = adding_batch(32, 20, data)
        loss = (model(inputs, lengths) - targets).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = test_mse()
    mean_predictor = test_targets.var(unbiased=False).item()
    assert after < 0.1 * before and after < 0.1 * mean_predictor, (before, after, mean_predictor)
    with torch.no_grad():
        assert fraction_correct(model(test_inputs, test_lengths), test_targets) > 0.8


def test_demo_runs(capsys):
    solved = demo.main(["--T", "10", "--steps", "20", "--log-every", "10"])
    out = capsys.readouterr().out
    assert "adding problem, T=10" in out and "step    20" in out
    assert 0.0 <= solved <= 1.0


def test_paper_net_structure_survives_updates():
    experiment = Reber(seed=0)
    net = PaperNet(**experiment.net_options(), seed=0)
    H = 4
    bias = net.cells.bias_ih_l0.detach()
    assert torch.equal(bias[2 * H:], torch.tensor([-1.0, -2.0, -3.0, -4.0]))
    assert torch.equal(bias[H:2 * H], torch.zeros(H))  # no cell-input biases in exp 1
    assert net.cells.weight_ih_l0.abs().max() <= 0.2 and net.readout.bias is None
    for trainer in (train_online, train_sequence):
        for _ in range(3):
            trainer(net, *experiment.training_sequence(), 0.5)
    assert torch.equal(net.cells.bias_ih_l0.detach()[H:2 * H], torch.zeros(H))
    assert torch.equal(net.cells.bias_hh_l0.detach(), torch.zeros(3 * H))
    assert not torch.equal(net.cells.bias_ih_l0.detach()[2 * H:], torch.tensor([-1.0, -2.0, -3.0, -4.0]))
    # The online layer trains the net's own parameters.
    assert net.online_layer().weight_ih_l0 is net.cells.weight_ih_l0


def test_online_recipe_equals_sequence_recipe_for_one_target():
    """With a single target (the last step of two-sequence masked to it) the online recipe's one
    update is the sequence recipe's update."""
    torch.manual_seed(0)
    experiment = TwoSequence(seed=0, p=6)
    inputs, targets, mask = experiment.training_sequence()
    mask = torch.zeros_like(mask)
    mask[-2] = True
    nets = [PaperNet(**experiment.net_options(), seed=3) for _ in range(2)]
    train_online(nets[0], inputs, targets, mask, 1.0)
    train_sequence(nets[1], inputs, targets, mask, 1.0)
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("argv", [
    ["reber", "--budget", "120"],
    ["reber", "--budget", "120", "--recipe", "sequence"],
    ["reber", "--budget", "120", "--gate-feedback", "off"],
    ["two-sequence", "--p", "8", "--budget", "50"],
    ["two-sequence", "--p", "8", "--budget", "50", "--recipe", "sequence"],
    ["two-sequence", "--variant", "b", "--p", "8", "--budget", "50"],
    ["two-sequence", "--p", "8", "--budget", "50", "--input-gate-bias", "-3"],
    ["two-sequence", "--p", "8", "--budget", "50", "--model", "lstm"],
    ["two-sequence", "--p", "8", "--budget", "50", "--model", "rnn"],
])
def test_runner_smoke_and_report(tmp_path, argv):
    results = tmp_path / "results.jsonl"
    records = runner.main(argv + ["--results", str(results), "--quiet", "--trials", "2",
                                  "--plot", str(tmp_path / "curve.png")])
    assert len(records) == 2
    saved = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["trial"] for r in saved] == [0, 1]
    for r in saved:
        assert r["experiment"] == argv[0] and 0 <= r["fraction_wrong_test"] <= 1
        assert r["sequences_until_success"] is None or r["sequences_until_success"] <= r["budget"]
        # (exp 2a's own net has no recurrent connections at all)
        assert r["weights"] > 0 and r["gate_feedback"] == (
            "lstm" not in argv and "rnn" not in argv and "off" not in argv
            and argv[0] != "two-sequence")
    table = report.render(saved)
    assert table.count("\n| " + argv[0]) == 1
    if saved[0]["model"] == "lstm1997":
        feedback = "gate feedback" if saved[0]["gate_feedback"] else "no gate feedback"
        if "--input-gate-bias" in argv:
            feedback += ", input-gate bias -3 (drift remedy)"
        assert f"| {feedback}, {saved[0]['weights']} weights |" in table


def test_online_recipe_learns_the_grammar():
    """The online recipe on exp 1 for 1,000 strings: the mean error per target falls well below
    its start (the grammar's transitions are learned; the long-lag branch is not, within this
    budget: RESULTS.md reports the full runs)."""
    (record,) = runner.main(["reber", "--budget", "1000", "--quiet", "--results", "/dev/null"])
    curve = [error for _, error in record["curve"]]
    assert curve[-1] < 0.75 * curve[0], curve


def test_gradient_flow_shows_the_constant_error_carousel(tmp_path):
    """Error reaching back T-1 = 299 steps: vanished for nn.RNN and nn.LSTM (forget gate at its
    default init), undiminished through the carousel for the 1997 cell's truncated gradient (the
    state's gradient is exactly constant: the CEC carries it unchanged)."""
    results = runner.main(["gradient-flow", "--T", "300", "--quiet", "--plot", str(tmp_path / "g.png")])
    far = 299
    for model in ("rnn", "lstm"):
        assert results[model]["input"][far] < 1e-20 * results[model]["input"][0]
    truncated = results["lstm1997 truncated"]
    assert truncated["state"][0] is None
    assert max(truncated["state"][1:]) == pytest.approx(min(truncated["state"][1:]), rel=1e-12)
    assert truncated["input"][far] > 0.1 * truncated["input"][1]


def marked(pairs):
    """(positions marked 1, values there) read off the raw pairs."""
    positions = [t for t in range(pairs.shape[0]) if pairs[t, 1] == 1]
    return positions, [float(pairs[t, 0]) for t in positions]


def test_final_target_layout_and_recipes_agree():
    """One target at the end: the online recipe's single update is the sequence recipe's."""
    experiment = Adding(seed=0, T=12)
    inputs, targets, mask = experiment.training_sequence()
    assert mask.tolist() == [False] * (len(mask) - 1) + [True]
    assert torch.equal(targets[:-1], torch.zeros_like(targets[:-1]))
    nets = [PaperNet(**experiment.net_options(), seed=1) for _ in range(2)]
    train_online(nets[0], inputs, targets, mask, 0.5)
    train_sequence(nets[1], inputs, targets, mask, 0.5)
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    inputs, targets, mask = final_target_task(torch.ones(3, 2), torch.tensor([0.25]))
    assert inputs.shape == (3, 1, 2) and targets[-1, 0, 0] == 0.25 and mask.sum() == 1


@pytest.mark.parametrize("argv", [
    ["long-lag", "--q", "10", "--p", "10"],
    ["noise-signal", "--T", "20"],
    ["noise-signal", "--variant", "c", "--T", "20"],
    ["adding", "--T", "20"],
    ["adding", "--T", "20", "--model", "rnn"],
    ["multiplication", "--T", "20", "--n-seq", "13"],
    ["temporal-order"],
    ["temporal-order", "--variant", "b", "--model", "lstm"],
    ["reber", "--cells-per-block", "2"],
])
def test_runner_smoke(tmp_path, argv):
    results = tmp_path / "results.jsonl"
    (record,) = runner.main(argv + ["--budget", "30", "--quiet", "--results", str(results)])
    saved = json.loads(results.read_text())
    assert saved["experiment"] == argv[0] and saved["budget"] == 30
    assert saved["recipe"] == ("online" if argv[0] == "reber" and "--model" not in argv
                               else "sequence")
    assert 0 <= saved["fraction_wrong_test"] <= 1
    assert saved["paper"] is None or isinstance(saved["paper"], str)


def test_report_with_notes(tmp_path):
    results, notes = tmp_path / "r.jsonl", tmp_path / "notes.md"
    runner.main(["adding", "--T", "20", "--budget", "150", "--trials", "2", "--quiet",
                 "--results", str(results)])
    notes.write_text("## Analysis\nhand-written\n")
    text = report.main([str(results), "--notes", str(notes)])
    row = next(line for line in text.splitlines() if line.startswith("| adding"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[:7] == ["adding", "T=20", "lstm1997", "gate feedback, 93 weights", "sequence",
                         "2", "150"]
    assert cells[8] == "-" and cells[10] != "-"  # no success; the test MSE is reported
    assert text.endswith("## Analysis\nhand-written\n")


def test_runner_rejects_unknown_variants():
    with pytest.raises(ValueError, match="variant"):
        runner.main(["temporal-order", "--variant", "c", "--budget", "1", "--results", "/dev/null"])


def test_adding_problem_learns_with_the_papers_recipe():
    """Exp 4 at T = 100 with the paper's net, initialisation, learning rate and one sequence per
    update. The budget this test can afford, 60,000 sequences, is below the paper's mean of 74,000 until its stopping rule: it checks that the net
    learns the lag (the error falls tenfold and most test sums come out right: 8% wrong here,
    from ~85% at the start), not the paper's final accuracy, which RESULTS.md reports from
    runs of 200,000 sequences."""
    (record,) = runner.main(["adding", "--T", "100", "--budget", "60000", "--quiet",
                             "--results", "/dev/null"])
    assert record["fraction_wrong_test"] < 0.25, record["fraction_wrong_test"]
    assert record["curve"][-1][1] < 0.1 * record["curve"][0][1]


def test_learning_curve_plot_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "curve.png"
    runner.main(["temporal-order", "--budget", "200", "--quiet", "--results", "/dev/null",
                 "--plot", str(plot)])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def feed(experiment, errors):
    """Presents training results with the given final absolute errors to the stopping rule;
    returns what solved() said after the last one."""
    said = False
    for error in errors:
        experiment.target = torch.tensor([0.5])
        outputs = torch.tensor([0.5 + error]).reshape(1, 1, 1)
        said = experiment.solved(None, outputs)
    return said


def test_stopping_rules():
    # Exp 4: mean absolute error below 0.01 and the last 2,000 all within 0.04.
    assert not feed(Adding(seed=0), [0.005] * 1999)
    assert feed(Adding(seed=0), [0.005] * 2000)
    assert not feed(Adding(seed=0), [0.005] * 1000 + [0.05] + [0.005] * 999)
    assert feed(Adding(seed=0), [0.05] + [0.005] * 2000)  # the wrong one has left the window
    assert not feed(Adding(seed=0), [0.03] * 2000)  # all correct, but a mean error of 0.03
    # Exp 5: fewer than n_seq of the last 2,000 wrong (error above 0.04).
    assert feed(Multiplication(seed=0, n_seq=13), [0.05] * 12 + [0.0] * 1988)
    assert not feed(Multiplication(seed=0, n_seq=13), [0.05] * 13 + [0.0] * 1987)
    # Exp 2c: 10,000 consecutive sequences within 0.2.
    assert not feed(LongLag(seed=0), [0.1] * 9999)
    assert feed(LongLag(seed=0), [0.1] * 10000)
    assert not feed(LongLag(seed=0), [0.1] * 5000 + [0.25] + [0.1] * 5000)
    # Exp 6: mean absolute error below 0.1 and the last 2,000 within 0.3.
    assert feed(TemporalOrder(seed=0), [0.05] * 2000)
    assert not feed(TemporalOrder(seed=0), [0.05] * 1999 + [0.31])
    assert not feed(TemporalOrder(seed=0), [0.2] * 2000)


def test_noise_signal_stops_when_its_256_test_sequences_are_right():
    """ST1 and ST2, checked every 1,000 training sequences on 256 sequences of their own."""
    experiment = NoiseSignal(seed=0, variant="a", T=20, N=3)

    def knows_the_class(inputs):  # the class is the sign of the first value (exp 3a)
        target = 1.0 if float(inputs[0, 0, 0]) > 0 else 0.0
        return torch.full((inputs.shape[0], 1, 1), target)

    outputs = torch.zeros(1, 1, 1)
    assert not any(experiment.solved(lambda x: torch.full((x.shape[0], 1, 1), 0.5), outputs)
                   for _ in range(1000))
    assert not any(experiment.solved(knows_the_class, outputs) for _ in range(999))
    assert experiment.solved(knows_the_class, outputs)  # ST1 and ST2: every error is 0
    assert experiment.milestones == {"ST1": 2000, "ST2": 2000}

    def roughly(inputs):  # right class, but an absolute error of 0.1: ST1 without ST2
        return (knows_the_class(inputs) - 0.5) * 0.8 + 0.5

    experiment = NoiseSignal(seed=0, variant="a", T=20, N=3)
    assert not any(experiment.solved(roughly, outputs) for _ in range(1000))
    assert experiment.milestones == {"ST1": 1000}


def noise_signal_rule(variant, wrong, mean_error):
    """Whether NoiseSignal's stopping check fires when `wrong` of its 256 sequences are wrong and
    the mean absolute error is `mean_error` (the test sequences' errors replaced)."""
    experiment = NoiseSignal(seed=0, variant=variant, T=20, N=3)
    tolerance = experiment.tolerance
    errors = [(tolerance * 2, mean_error, 0.0)] * wrong + [(tolerance / 2, mean_error, 0.0)] * (
        256 - wrong)
    experiment.test_errors = lambda net, count=None, seed=None: errors
    outputs = torch.zeros(1, 1, 1)
    return any(experiment.solved(None, outputs) for _ in range(1000)), experiment.milestones


def test_noise_signal_3b_and_3c_have_the_papers_own_rules():
    # 3b: ST1 fewer than 6 of 256 wrong; ST2 also a mean absolute error below 0.04
    assert noise_signal_rule("b", 5, 0.039) == (True, {"ST1": 1000, "ST2": 1000})
    assert noise_signal_rule("b", 6, 0.01) == (False, {})
    assert noise_signal_rule("b", 0, 0.041) == (False, {"ST1": 1000})
    # 3a keeps its stricter rule
    assert noise_signal_rule("a", 1, 0.001)[0] is False
    assert noise_signal_rule("a", 0, 0.011)[0] is False
    # 3c: none misclassified (error above 0.1) and a mean absolute difference below 0.015
    assert noise_signal_rule("c", 0, 0.014)[0] is True
    assert noise_signal_rule("c", 0, 0.016)[0] is False
    assert noise_signal_rule("c", 1, 0.001)[0] is False
    assert NoiseSignal(seed=0, variant="c").class_targets == (0.2, 0.8)


def test_two_sequence_success_is_10000_successive_sequences_within_025():
    """Exp 2a/2b's rule: every output within 0.25 of its target during 10,000 successive
    sequences; the sequences until success are those before the streak."""
    experiment = TwoSequence(seed=0, p=6)

    def present(error):
        inputs, targets, mask = experiment.training_sequence()
        return experiment.solved(None, targets + error)

    assert not any(present(0.2) for _ in range(100))
    assert not present(0.3)  # one output off by 0.25 or more: the streak starts again
    assert not any(present(0.1) for _ in range(9_999))
    assert present(0.1)
    assert experiment.sequences_until_success(10_101) == 101


def test_paper_columns_state_only_what_the_paper_reports():
    assert all("%" not in text for text in LongLag.paper.values())  # 2c: no success rate
    assert {"q=1000,p=500", "q=1000,p=200"} <= set(LongLag.paper)
    assert {"3b T=100,N=1", "3b T=1000,N=1", "3c T=100,N=1"} <= set(NoiseSignal.paper)


def test_a_killed_run_resumes_and_writes_the_uninterrupted_record(tmp_path):
    """A run checkpoints its trial every --checkpoint-every seconds; killed (SIGKILL) and started
    again, the same command continues from the last checkpoint, skips the trials it already
    recorded, and writes the records an uninterrupted run writes (but for the wall-clock time)."""
    import signal
    import subprocess
    import sys
    import time

    # A budget that lasts many checkpoints: a trial of 3,000 strings trains for about 4 s (measured
    # on the development machine with the one-step online path; 600 strings, the budget before,
    # ended within 1 s, before the kill).
    command = [sys.executable, "-m", "lstm1997.experiments", "reber", "--budget", "3000",
               "--trials", "2", "--quiet", "--checkpoint-every", "0.2"]
    whole, resumed = tmp_path / "whole.jsonl", tmp_path / "resumed.jsonl"
    subprocess.run(command + ["--results", str(whole)], check=True, timeout=600)
    checkpoint = tmp_path / "resumed.jsonl.trial0.checkpoint"
    process = subprocess.Popen(command + ["--results", str(resumed)])
    deadline = time.time() + 300
    while not checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it wrote a checkpoint"
    time.sleep(0.3)  # mid-trial, a checkpoint later
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert list(tmp_path.glob("resumed.jsonl.trial*.checkpoint"))
    resumed_run = subprocess.run(command + ["--results", str(resumed)], check=True, timeout=600,
                                 capture_output=True, text=True)
    assert "resuming after" in resumed_run.stdout
    assert not list(tmp_path.glob("resumed.jsonl.trial*.checkpoint*"))
    # started once more, the finished command has nothing left to run
    subprocess.run(command + ["--results", str(resumed)], check=True, timeout=600)

    def records(path):
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        for record in lines:
            del record["seconds"]
        return lines

    assert len(records(resumed)) == 2
    assert records(resumed) == records(whole)


def train_online_with_autograd(net, inputs, targets, mask, alpha):
    """The online recipe with autograd for the output units at every step: the reference for
    train_online's written-out delta rule."""
    online = net.online_layer()
    online.reset()
    outputs = []
    for t in range(inputs.shape[0]):
        hidden = online(inputs[t])
        output = torch.sigmoid(net.readout(hidden))
        outputs.append(output.detach())
        if mask[t]:
            loss = 0.5 * (output - targets[t]).square().sum()
            readout = list(net.readout.parameters())
            grad_hidden, *grad_readout = torch.autograd.grad(loss, [hidden, *readout])
            online.update(grad_hidden, alpha)
            with torch.no_grad():
                for parameter, grad in zip(readout, grad_readout):
                    parameter.sub_(grad, alpha=alpha)
            net.enforce_structure()
    return torch.stack(outputs)


def train_sequence_with_autograd(net, inputs, targets, mask, alpha):
    """The sequence recipe with autograd through the whole net: the reference for
    train_sequence's written-out output units."""
    outputs = net(inputs)
    parameters = net.trainable()
    grads = torch.autograd.grad(squared_error(outputs, targets, mask), parameters)
    with torch.no_grad():
        for parameter, grad in zip(parameters, grads):
            parameter.sub_(grad, alpha=alpha)
    net.enforce_structure()
    return outputs.detach()


@pytest.mark.parametrize("recipe,model", [("online", "lstm1997"), ("sequence", "lstm1997"),
                                          ("sequence", "lstm"), ("sequence", "rnn")])
@pytest.mark.parametrize("experiment", [Reber(seed=0, cells_per_block=2), Adding(seed=0, T=12),
                                        TemporalOrder(seed=0, variant="a"),
                                        TwoSequence(seed=0, p=6)])
def test_recipes_equal_autograd(experiment, recipe, model):
    """The recipes' written-out output units against autograd through the whole net (online: at
    every step with a target), float64, three sequences in a row."""
    ours_step, reference_step = {
        "online": (train_online, train_online_with_autograd),
        "sequence": (train_sequence, train_sequence_with_autograd)}[recipe]
    options = experiment.net_options()
    nets = [PaperNet(**options, seed=2, model=model).double() for _ in range(2)]
    for _ in range(3):
        inputs, targets, mask = experiment.training_sequence()
        inputs, targets = inputs.double(), targets.double()
        ours = ours_step(nets[0], inputs, targets, mask, 0.5)
        reference = reference_step(nets[1], inputs, targets, mask, 0.5)
        torch.testing.assert_close(ours, reference, rtol=1e-12, atol=1e-12)
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert any((p != q).any() for p, q in zip(
        nets[0].parameters(), PaperNet(**options, seed=2, model=model).double().parameters()))


def test_two_sequence_net_grows_its_cell_when_the_error_stops_decreasing():
    """Exp 2a's sequential construction: without the cell the outputs see the inputs only and
    the cell's weights stay as drawn; the cell comes once a window's mean error is less than 1%
    below the previous window's."""
    experiment = TwoSequence(seed=0, p=6)
    net = experiment.make_net(3)
    drawn = [p.detach().clone() for p in (net.cell_input, net.input_gate, net.readout)]
    for _ in range(3):
        inputs, targets, mask = experiment.training_sequence()
        net.train_online(inputs, targets, mask, 1.0)
    assert torch.equal(net.cell_input, drawn[0]) and torch.equal(net.input_gate, drawn[1])
    assert torch.equal(net.readout[:, -1], drawn[2][:, -1])
    assert not torch.equal(net.readout, drawn[2])
    # the rule, on given errors: falling windows, then one that falls by less than 1%
    for window, error in enumerate([1.0, 0.5, 0.3, 0.299]):
        for _ in range(100):
            assert not net.cell_added
            experiment.presented += 1
            experiment.construct(net, error)
    assert net.cell_added and experiment.milestones == {"cell added": 400}


@pytest.mark.parametrize("cell_added", [False, True])
def test_two_sequence_net_online_step_is_the_gradient_step_in_both_phases(cell_added):
    experiment = TwoSequence(seed=0, p=6)
    nets = [experiment.make_net(3) for _ in range(2)]
    for net in nets:
        net.cell_added = cell_added
    inputs, targets, mask = experiment.training_sequence()
    single = torch.zeros_like(mask)
    single[-2] = True
    nets[0].train_online(inputs, targets, single, 1.0)
    train_sequence(nets[1], inputs, targets, single, 1.0)
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def train_sequence_through_the_module(net, inputs, targets, mask, alpha):
    """The sequence recipe as it ran before train_cells_sequence: the layer through its module
    and autograd (lstm1997::lstm), the output units written out."""
    hidden, _ = net.cells(inputs)
    weight, bias = net.readout.weight, net.readout.bias
    with torch.no_grad():
        outputs = torch.sigmoid(net.readout(hidden))
        error = (outputs - targets) * outputs * (1 - outputs) * mask.reshape(-1, 1, 1)
        grad_hidden = error @ weight
    layer_parameters = [p for p in net.cells.parameters() if p.requires_grad]
    grads = torch.autograd.grad(hidden, layer_parameters, grad_hidden)
    with torch.no_grad():
        error, seen = error.reshape(-1, error.shape[-1]), hidden.reshape(-1, hidden.shape[-1])
        weight.sub_(error.t() @ seen, alpha=alpha)
        if bias is not None:
            bias.sub_(error.sum(0), alpha=alpha)
        for parameter, grad in zip(layer_parameters, grads):
            parameter.sub_(grad, alpha=alpha)
    net.enforce_structure()
    return outputs


@pytest.mark.parametrize("experiment", [Adding(seed=0, T=30), TemporalOrder(seed=0, variant="b"),
                                        Reber(seed=0, cells_per_block=2)])
@pytest.mark.parametrize("all_biases", [True, False])
def test_sequence_recipe_is_the_module_step_bit_for_bit(experiment, all_biases):
    """train_sequence calls the layer's ops directly: the same float32 step, bit for bit, as
    through the module and autograd, so that runs and their records stay as they were."""
    options = dict(experiment.net_options(), all_biases=all_biases)
    nets = [PaperNet(**options, seed=4) for _ in range(2)]
    for _ in range(4):
        inputs, targets, mask = experiment.training_sequence()
        ours = train_sequence(nets[0], inputs, targets, mask, 0.5)
        reference = train_sequence_through_the_module(nets[1], inputs, targets, mask, 0.5)
        assert torch.equal(ours, reference)
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        assert torch.equal(a, b)
