"""The module learns a long-time-lag task, and the adding problem's data follow the paper."""
import pytest
import torch

from lstm1997 import demo
from lstm1997.experiments.adding import AddingModel, adding_batch, fraction_correct


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
