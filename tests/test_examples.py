"""The example nn.LSTM script runs with the constructor swapped to lstm1997.LSTM."""
import importlib.util
import os

import pytest

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "char_lm.py")


def load_example():
    spec = importlib.util.spec_from_file_location("char_lm", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("swap", [[], ["--lstm1997"]])
def test_char_lm_trains_with_either_lstm(swap, capsys):
    example = load_example()
    first = example.main(swap + ["--steps", "1", "--hidden-size", "32", "--seq-len", "16"])
    last = example.main(swap + ["--steps", "60", "--hidden-size", "32", "--seq-len", "16"])
    out = capsys.readouterr().out
    assert ("LSTM(32, 32, num_layers=2, batch_first=True, dropout=0.1" in out)
    assert last < first  # same seed: the loss after 60 steps is below the first step's
