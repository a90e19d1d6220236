"""The data of the paper's experiments against the paper's definitions, read from the raw inputs
(not from the generators' own bookkeeping): exp 1 (embedded Reber grammar), 2a-2c, 3a-3c, 4, 5,
6a and 6b."""
from collections import Counter
import random
import statistics

import pytest
import torch

from lstm1997.experiments.adding import Adding, adding_batch, marked_pair_sequence
from lstm1997.experiments.long_lag import LongLag
from lstm1997.experiments.multiplication import Multiplication
from lstm1997.experiments.noise_signal import NoiseSignal
from lstm1997.experiments.paper_net import PaperNet
from lstm1997.experiments.reber import GRAPH, INDEX, Reber, embedded_reber_string, encode
from lstm1997.experiments.temporal_order import SYMBOLS, TemporalOrder
from lstm1997.experiments.two_sequence import TwoSequence, two_sequence


DRAWS = 2000


def marked(pairs):
    """(positions marked 1, values there) read off the raw pairs."""
    positions = [t for t in range(pairs.shape[0]) if pairs[t, 1] == 1]
    return positions, [float(pairs[t, 0]) for t in positions]


def symbols_of(inputs):
    """One-hot rows -> symbol indices, checking they are one-hot."""
    assert torch.equal(inputs.sum(1), torch.ones(inputs.shape[0]))
    return inputs.argmax(1).tolist()


def walk_inner(inner):
    """Follows the Reber graph over an inner string (B ... E); True if it is a legal path."""
    if inner[0] != "B" or inner[-1] != "E":
        return False
    node = 1
    for symbol in inner[1:-1]:
        if node is None:
            return False
        moves = dict(GRAPH[node])
        if symbol not in moves:
            return False
        node = moves[symbol]
    return node is None


def test_embedded_reber_strings_follow_the_grammar():
    rng = random.Random(0)
    strings = [embedded_reber_string(rng) for _ in range(2000)]
    for symbols, legal_next in strings:
        assert symbols[0] == "B" and symbols[-1] == "E"
        assert symbols[1] in "TP" and symbols[-2] == symbols[1]  # the remembered branch
        assert walk_inner(symbols[2:-2])
        assert len(legal_next) == len(symbols) and legal_next[-1] == set()
        for following, legal in zip(symbols[1:], legal_next):
            assert following in legal
        assert legal_next[-3] == {symbols[1]}  # after the inner E only the branch symbol is legal
    branches = Counter(s[1] for s, _ in strings)
    assert abs(branches["T"] - branches["P"]) < 200  # each branch with probability 1/2
    assert min(len(s) for s, _ in strings) == 9  # B T|P B T X S E T|P E, the shortest


def test_reber_sets_and_success_rule():
    experiment = Reber(seed=1)
    assert len(experiment.train_strings) == 256 and len(experiment.test_strings) == 256
    # the paper's test strings are not training strings
    training = {s for s, _ in experiment.train_strings}
    assert not any(s in training for s, _ in experiment.test_strings)
    symbols, legal_next = experiment.train_strings[0]
    inputs, targets, mask = encode(symbols)
    assert inputs.shape == (len(symbols), 1, 7) and mask.sum() == len(symbols) - 1
    assert torch.equal(targets[:-1, 0].argmax(1), inputs[1:, 0].argmax(1))
    perfect = torch.zeros(len(symbols), 7)
    for t, legal in enumerate(legal_next):
        for s in legal:
            perfect[t, INDEX[s]] = 1.0
    assert Reber.correct(perfect, legal_next)
    wrong = perfect.clone()
    wrong[-3] = 0
    wrong[-3, INDEX["T" if symbols[1] == "P" else "P"]] = 1.0  # the other branch symbol
    assert not Reber.correct(wrong, legal_next)


def test_two_sequence_definition():
    p = 100
    for first in "xy":
        indices = two_sequence(p, first)
        assert len(indices) == p + 1
        assert indices[0] == indices[-1] == (p - 1 if first == "x" else p)
        assert indices[1:-1].tolist() == list(range(p - 1))  # a_1 ... a_{p-1}
    experiment = TwoSequence(seed=0, p=p)
    firsts = Counter(int(experiment.training_sequence()[0][0, 0].argmax()) for _ in range(2000))
    assert set(firsts) == {p - 1, p} and abs(firsts[p - 1] - firsts[p]) < 200
    inputs, targets, mask = experiment.training_sequence()
    assert inputs.shape == (p + 1, 1, p + 1) and not mask[-1] and mask[:-1].all()
    assert torch.equal(targets[-2, 0], inputs[-1, 0])  # the hard prediction: the final symbol
    # 2b: a random middle, and only the final prediction has a target
    experiment = TwoSequence(seed=0, p=p, variant="b")
    middles = set()
    for _ in range(20):
        inputs, targets, mask = experiment.training_sequence()
        symbols = inputs[:, 0].argmax(1)
        assert symbols[0] == symbols[-1] and symbols[0] in (p - 1, p)
        assert (symbols[1:-1] < p - 1).all()
        middles.add(tuple(symbols[1:-1].tolist()))
        assert mask.tolist() == [False] * (p - 1) + [True, False]
    assert len(middles) == 20 and tuple(range(p - 1)) not in middles


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
        high, low = (0.2, 0.8) if variant == "c" else (1.0, 0.0)  # 3c: 0.2 for class 1
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
    assert net.readout.bias is None  # the paper's output unit has no bias (102 weights)


def test_noise_signal_c_has_noisy_training_targets():
    experiment = NoiseSignal(seed=0, variant="c")
    finals = [float(experiment.training_sequence()[1][-1]) for _ in range(500)]
    assert len(set(finals)) == 500 and 0.3 < statistics.mean(finals) < 0.7


def test_adding_batch_follows_the_paper():
    T, batch = 40, 500
    inputs, targets, lengths = adding_batch(batch, T, torch.Generator().manual_seed(0))
    assert inputs.shape == (int(lengths.max()), batch, 2)
    assert lengths.min() >= T and lengths.max() <= T + T // 10
    values, markers = inputs[..., 0], inputs[..., 1]
    for b in range(batch):
        n = int(lengths[b])
        v, m = values[:n, b], markers[:n, b]
        marked = (m == 1).nonzero().flatten().tolist()
        assert len(marked) == 2
        first, second = marked
        assert first < 10 and second < T // 2 - 1
        assert m[0] in (-1, 1) and m[n - 1] == -1
        assert ((m == 0) | (m == 1) | (m == -1)).all() and (m == -1).sum() == (2 if m[0] == -1 else 1)
        assert (v.abs() <= 1).all() and (inputs[n:, b] == 0).all()
        if first == 0:
            assert v[0] == 0
        assert targets[b] == pytest.approx(0.5 + (v[first] + v[second]).item() / 4, abs=1e-6)
    assert (targets >= 0).all() and (targets <= 1).all()


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
    # 2 blocks x 2 cells: 2 + 4 + 2 gate rows, which the gates' outputs feed back into too
    assert net.cells.weight_hh_l0.shape == (8, 8)
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


@pytest.mark.parametrize("name,options,weights", [
    ("reber", {"cells_per_block": 1}, 264),
    ("reber", {"cells_per_block": 2}, 276),
    ("long-lag", {"q": 10, "p": 50}, 6 * 50 + 64),
    ("long-lag", {"q": 100, "p": 100}, 6 * 100 + 64),
    ("noise-signal", {}, 102),
    ("adding", {}, 93),
    ("multiplication", {}, 93),
    ("temporal-order", {"variant": "a"}, 156),
    ("temporal-order", {"variant": "b"}, 308),
    ("two-sequence", {"p": 100}, 10504),
])
def test_nets_have_the_papers_weight_counts(name, options, weights):
    """The paper's nets (with gate feedback: cells and gates see the gate outputs of t-1) have
    exactly the weights the paper counts; the record of a run carries the count."""
    from lstm1997.experiments.__main__ import EXPERIMENTS, make_net, parse_args

    experiment = EXPERIMENTS[name](0, **options)
    net = make_net(experiment, parse_args([name]), seed=0)
    assert net.weight_count() == weights
    if name != "two-sequence":
        without = make_net(experiment, parse_args([name, "--gate-feedback", "off"]), seed=0)
        assert not without.gate_feedback and without.weight_count() < weights


# --- The generators draw in bulk: the same data as one Python draw per value --------------------

def test_uniform_values_equal_random_uniform_bit_for_bit():
    from lstm1997.experiments.adding import uniform_values
    for low, high in ((-1.0, 1.0), (0.0, 1.0), (-0.3, 2.5)):
        ours, reference = random.Random(11), random.Random(11)
        for count in (1, 2, 7, 1100):
            values = uniform_values(ours, count, low, high)
            assert values.dtype == torch.float64
            assert values.tolist() == [reference.uniform(low, high) for _ in range(count)]
        assert ours.getstate() == reference.getstate()


def test_gauss_values_equal_random_gauss_bit_for_bit():
    from lstm1997.experiments.noise_signal import gauss_values
    ours, reference = random.Random(5), random.Random(5)
    ours.gauss(0, 1), reference.gauss(0, 1)  # leaves a value pending in both
    for count in (0, 1, 2, 3, 10, 1001):  # odd counts leave one pending for the next call
        for mu, sigma in ((0, 0.2 ** 0.5), (1.0, 0.5)):
            assert gauss_values(ours, count, mu, sigma) == [reference.gauss(mu, sigma)
                                                            for _ in range(count)]
            assert ours.getstate() == reference.getstate()


def marked_pair_sequence_one_draw_per_value(rng, T, low, first_marked_value):
    """The marked-pair generator written value by value (as it first was): the reference."""
    length = rng.randint(T, T + T // 10)
    values = [rng.uniform(low, 1.0) for _ in range(length)]
    markers = [0.0] * length
    markers[0] = markers[-1] = -1.0
    first = rng.randrange(min(10, T // 2 - 1))
    second = rng.choice([k for k in range(T // 2 - 1) if k != first])
    markers[first] = markers[second] = 1.0
    if markers[0] == 1.0:
        values[0] = first_marked_value
    return torch.tensor([values, markers]).T.contiguous(), values[first], values[second]


@pytest.mark.parametrize("T", [6, 7, 20, 100, 1000])
def test_marked_pairs_equal_one_draw_per_value(T):
    for low, first_marked_value in ((-1.0, 0.0), (0.0, 1.0)):
        ours, reference = random.Random(T), random.Random(T)
        for _ in range(200 if T < 1000 else 20):
            pairs, x1, x2 = marked_pair_sequence(ours, T, low, first_marked_value)
            expected, e1, e2 = marked_pair_sequence_one_draw_per_value(reference, T, low,
                                                                       first_marked_value)
            assert torch.equal(pairs, expected) and (x1, x2) == (e1, e2)
        assert ours.getstate() == reference.getstate()


@pytest.mark.parametrize("variant", ["a", "b", "c"])
def test_noise_signal_values_equal_one_draw_per_value(variant):
    from lstm1997.experiments.noise_signal import NOISE_STD, noise_signal_sequence
    ours, reference = random.Random(3), random.Random(3)
    for T, N in ((100, 3), (100, 1), (1000, 3), (11, 1)):
        for _ in range(20):
            values, label = noise_signal_sequence(ours, T, N, variant)
            expected_label = reference.randrange(2)
            length = reference.randint(T, T + T // 10)
            signal = 1.0 if expected_label == 0 else -1.0
            expected = [signal + (reference.gauss(0, NOISE_STD) if variant != "a" else 0.0)
                        for _ in range(N)]
            expected += [reference.gauss(0, NOISE_STD) for _ in range(length - N)]
            assert (values, label) == (expected, expected_label)
    assert ours.getstate() == reference.getstate()


@pytest.mark.parametrize("experiment", [Adding(seed=0, T=20), Multiplication(seed=0, T=20),
                                        LongLag(seed=0, q=10, p=10)])
def test_stopping_rules_count_the_window_as_it_moves(experiment):
    """The rules' counts, kept as sequences enter and leave the window, against a pass over it."""
    experiment.window = 50
    experiment.recent = type(experiment.recent)(maxlen=50)
    rng = random.Random(0)
    for _ in range(400):
        error = rng.choice([0.0, 0.01, experiment.tolerance, 0.05, 0.3, rng.random() * 0.1])
        experiment.target = torch.zeros(1)
        experiment.solved(None, torch.full((1, 1), error))
        largest = [entry[0] for entry in experiment.recent]
        assert experiment.all_recent_correct() == all(e < experiment.tolerance for e in largest)
        assert experiment.recent_over_tolerance == sum(e > experiment.tolerance for e in largest)


def test_random_units_equal_random_random_bit_for_bit():
    from lstm1997.experiments.final_target import random_units
    ours, reference = random.Random(3), random.Random(3)
    for count in (0, 1, 2, 5, 1100):
        units = random_units(ours, count)
        assert units.dtype == torch.float64 and units.shape == (count,)
        assert units.tolist() == [reference.random() for _ in range(count)]
        assert ours.getstate() == reference.getstate()
    ours.getrandbits(7), reference.getrandbits(7)  # another kind of draw in between
    assert random_units(ours, 9).tolist() == [reference.random() for _ in range(9)]


@pytest.mark.parametrize("n", [1, 2, 3, 50, 64, 100, 1000, 2 ** 20 + 1])
def test_random_below_equals_randrange_bit_for_bit(n):
    from lstm1997.experiments.final_target import random_below
    ours, reference = random.Random(n), random.Random(n)
    for count in (0, 1, 7, 1000):
        values = random_below(ours, n, count)
        assert values.dtype == torch.int64 and values.shape == (count,)
        assert values.tolist() == [reference.randrange(n) for _ in range(count)]
        assert ours.getstate() == reference.getstate()
        assert ours.random() == reference.random()  # the next draws go on alike


def long_lag_sequence_one_draw_per_value(rng, q, p):
    """The long-lag generator written value by value (as it first was): the reference."""
    start, trigger, x = p, p + 1, p + 2
    label = rng.randrange(2)
    symbols = [start, x + label] + [rng.randrange(p) for _ in range(q)]
    while rng.random() < 0.9:
        symbols.append(rng.randrange(p))
    symbols.append(trigger)
    return symbols, label


@pytest.mark.parametrize("q,p", [(5, 3), (50, 50), (1000, 1000), (1000, 200)])
def test_long_lag_sequences_equal_one_draw_per_value(q, p):
    from lstm1997.experiments.long_lag import long_lag_sequence
    ours, reference = random.Random(q + p), random.Random(q + p)
    for _ in range(20):
        assert long_lag_sequence(ours, q, p) == long_lag_sequence_one_draw_per_value(reference, q, p)
    assert ours.getstate() == reference.getstate()
