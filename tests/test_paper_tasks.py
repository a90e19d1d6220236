"""The data of experiments 2c, 3, 4, 5 and 6 against the paper's definitions (read from the raw
inputs, not from the generators' own bookkeeping), their nets, and smoke runs of the runner."""
import json
import random
import statistics

import pytest
import torch

from lstm1997.experiments import __main__ as runner
from lstm1997.experiments import report
from lstm1997.experiments.adding import Adding, marked_pair_sequence
from lstm1997.experiments.final_target import final_target_task
from lstm1997.experiments.long_lag import LongLag
from lstm1997.experiments.multiplication import Multiplication
from lstm1997.experiments.noise_signal import NoiseSignal
from lstm1997.experiments.paper_net import PaperNet, train_online, train_sequence
from lstm1997.experiments.temporal_order import SYMBOLS, TemporalOrder

DRAWS = 2000


def symbols_of(inputs):
    """One-hot rows -> symbol indices, checking they are one-hot."""
    assert torch.equal(inputs.sum(1), torch.ones(inputs.shape[0]))
    return inputs.argmax(1).tolist()


@pytest.mark.parametrize("q,p", [(100, 100), (50, 10)])
def test_long_lag_sequences(q, p):
    experiment = LongLag(seed=0, q=q, p=p)
    rng = random.Random(1)
    labels, extra = [], []
    b, e, x, y = p, p + 1, p + 2, p + 3
    for _ in range(DRAWS):
        inputs, target = experiment.sample(rng)
        assert inputs.shape[1] == p + 4
        symbols = symbols_of(inputs)
        assert symbols[0] == b and symbols[1] in (x, y) and symbols[-1] == e
        middle = symbols[2:-1]
        assert len(middle) >= q and all(s < p for s in middle)  # distractors only, at least q
        label = symbols[1] - x
        assert torch.equal(target, torch.tensor([1.0, 0.0] if label == 0 else [0.0, 1.0]))
        labels.append(label)
        extra.append(len(middle) - q)
    assert 0.45 < statistics.mean(labels) < 0.55
    # After the q sure distractors, e ends the input with probability 1/10 per step: the number
    # of further distractors is geometric with mean 9.
    assert 8 < statistics.mean(extra) < 10
    net = PaperNet(**experiment.net_options())
    assert net.cells.weight_ih_l0.shape == (6, p + 4) and net.cells.bias_ih_l0 is None
    assert net.readout.bias is None and net.cells.weight_ih_l0.abs().max() <= 0.2


@pytest.mark.parametrize("variant", ["a", "b", "c"])
def test_noise_signal_sequences(variant):
    T, N = 100, 3
    experiment = NoiseSignal(seed=0, variant=variant, T=T, N=N)
    rng = random.Random(2)
    labels, noise, signal_noise = [], [], []
    for _ in range(DRAWS):
        inputs, target = experiment.sample(rng)
        values = inputs[:, 0]
        assert inputs.shape[1] == 1 and T <= len(values) <= T + T // 10
        high, low = (0.8, 0.2) if variant == "c" else (1.0, 0.0)
        label = 0 if abs(float(target) - high) < 1e-6 else 1
        assert float(target) == pytest.approx((high, low)[label])
        signal = 1.0 if label == 0 else -1.0
        if variant == "a":
            assert torch.equal(values[:N], torch.full((N,), signal))
        else:
            signal_noise.extend((values[:N] - signal).tolist())
        noise.extend(values[N:].tolist())
        labels.append(label)
    assert 0.45 < statistics.mean(labels) < 0.55
    assert abs(statistics.mean(noise)) < 0.01 and abs(statistics.variance(noise) - 0.2) < 0.01
    if variant != "a":  # the signal values carry the same noise
        assert abs(statistics.mean(signal_noise)) < 0.03
        assert abs(statistics.variance(signal_noise) - 0.2) < 0.03
    net = PaperNet(**experiment.net_options())
    K, H = 3, 3
    bias = net.cells.bias_ih_l0.detach()
    assert torch.equal(bias[:K], torch.tensor([-1.0, -3.0, -5.0]))
    assert torch.equal(bias[K + H:], torch.tensor([-2.0, -4.0, -6.0]))
    assert net.readout.bias is not None


def test_noise_signal_c_has_noisy_training_targets():
    experiment = NoiseSignal(seed=0, variant="c")
    finals = [float(experiment.training_sequence()[1][-1]) for _ in range(500)]
    assert len(set(finals)) == 500 and 0.3 < statistics.mean(finals) < 0.7


def marked(pairs):
    """(positions marked 1, values there) read off the raw pairs."""
    positions = [t for t in range(pairs.shape[0]) if pairs[t, 1] == 1]
    return positions, [float(pairs[t, 0]) for t in positions]


@pytest.mark.parametrize("T", [100, 20])
def test_adding_sequences(T):
    experiment = Adding(seed=0, T=T)
    rng = random.Random(3)
    first_marked = 0
    for _ in range(DRAWS):
        pairs, target = experiment.sample(rng)
        L = pairs.shape[0]
        assert T <= L <= T + T // 10
        positions, values = marked(pairs)
        assert len(positions) == 2 and positions[0] < 10 and positions[1] < T // 2 - 1
        assert all(m in (-1.0, 0.0, 1.0) for m in pairs[:, 1].tolist())
        assert pairs[-1, 1] == -1 and (pairs[0, 1] == -1 or positions[0] == 0)
        assert (pairs[1:-1, 1] != -1).all()
        assert (pairs[:, 0].abs() <= 1).all()
        if positions[0] == 0:
            first_marked += 1
            assert values[0] == 0.0  # X1 = 0 when the first pair is marked
        torch.testing.assert_close(target, torch.tensor([0.5 + sum(values) / 4]))
    # X1 is one of the first min(10, T/2 - 1) pairs, X2 one of the first T/2 - 1 others.
    expected = 1 / min(10, T // 2 - 1) + 1 / (T // 2 - 1)
    assert 0.7 * expected < first_marked / DRAWS < 1.3 * expected
    net = PaperNet(**experiment.net_options())
    assert net.cells.weight_hh_l0.shape == (8, 4)  # 2 blocks x 2 cells: 2 + 4 + 2 gate rows
    assert torch.equal(net.cells.bias_ih_l0.detach()[:2], torch.tensor([-3.0, -6.0]))


def test_multiplication_sequences():
    experiment = Multiplication(seed=0)
    rng = random.Random(4)
    for _ in range(DRAWS):
        pairs, target = experiment.sample(rng)
        positions, values = marked(pairs)
        assert len(positions) == 2 and (pairs[:, 0] >= 0).all() and (pairs[:, 0] <= 1).all()
        if positions[0] == 0:
            assert values[0] == 1.0
        torch.testing.assert_close(target, torch.tensor([values[0] * values[1]]))


def test_marked_pairs_need_room():
    with pytest.raises(ValueError, match="T: expected at least 6"):
        Adding(seed=0, T=5)
    with pytest.raises(ValueError, match="T: expected at least 6"):
        Multiplication(seed=0, T=4)
    assert len(marked_pair_sequence(random.Random(0), 6, -1.0, 0.0)[0]) == 6


@pytest.mark.parametrize("variant,windows", [("a", [(10, 20), (50, 60)]),
                                              ("b", [(10, 20), (33, 43), (66, 76)])])
def test_temporal_order_sequences(variant, windows):
    experiment = TemporalOrder(seed=0, variant=variant)
    rng = random.Random(5)
    classes = []
    for _ in range(DRAWS):
        inputs, target = experiment.sample(rng)
        symbols = "".join(SYMBOLS[i] for i in symbols_of(inputs))
        assert 100 <= len(symbols) <= 110 and symbols[0] == "E" and symbols[-1] == "B"
        relevant = [t for t, s in enumerate(symbols) if s in "XY"]
        assert len(relevant) == len(windows)
        assert all(low <= t <= high for t, (low, high) in zip(relevant, windows))
        assert set(symbols[1:-1]) <= set("abcdXY")
        label = int("".join("0" if symbols[t] == "X" else "1" for t in relevant), 2)
        assert target.shape == (2 ** len(windows),) and target.argmax() == label
        assert target.sum() == 1
        classes.append(label)
    counts = [classes.count(c) for c in range(2 ** len(windows))]
    assert min(counts) > 0.7 * DRAWS / len(counts)


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
    assert cells[:6] == ["adding", "T=20", "lstm1997", "sequence", "2", "150"]
    assert cells[7] == "-" and cells[9] != "-"  # no success; the test MSE is reported
    assert text.endswith("## Analysis\nhand-written\n")


def test_runner_rejects_unknown_variants():
    with pytest.raises(ValueError, match="variant"):
        runner.main(["temporal-order", "--variant", "c", "--budget", "1", "--results", "/dev/null"])


def test_adding_problem_learns_with_the_papers_recipe():
    """Exp 4 at T = 100 with the paper's net, initialisation, learning rate and one sequence per
    update. The budget this test can afford, 60,000 sequences (about a minute on an idle 2-core
    machine), is below the paper's mean of 74,000 until its stopping rule: it checks that the net
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
