"""TorchScript (script, trace, save/load in a fresh process), torch.compile and torch.export."""
import os
import subprocess
import sys

import pytest
import torch
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import lstm1997
from conftest import Holder

CONFIGS = [
    dict(),
    dict(num_layers=2, bidirectional=True, batch_first=True),
    dict(num_layers=3, bias=False, dropout=0.3, truncate=False, activation="paper"),
]


def make(config, seed=0):
    torch.manual_seed(seed)
    module = lstm1997.LSTM(4, 6, **config).eval()
    x = torch.randn(3, 7, 4) if config.get("batch_first") else torch.randn(7, 3, 4)
    return module, x


def gradients(module, outputs):
    output, (h_n, s_n) = outputs
    loss = output.pow(2).sum() + h_n.sum() + 2 * s_n.sum()
    return torch.autograd.grad(loss, list(module.parameters()))


def assert_same(module, other, x, exact=True):
    expected = module(x)
    actual = other(x)
    check = torch.equal if exact else (lambda a, b: torch.allclose(a, b, atol=1e-6, rtol=1e-5))
    assert check(actual[0], expected[0]) and check(actual[1][0], expected[1][0])
    assert check(actual[1][1], expected[1][1])
    for a, b in zip(gradients(module, actual), gradients(module, expected)):
        assert check(a, b)


@pytest.mark.parametrize("config", CONFIGS)
def test_script(config):
    module, x = make(config)
    assert_same(module, torch.jit.script(Holder(module)), x)


@pytest.mark.parametrize("config", CONFIGS)
def test_trace(config):
    module, x = make(config)
    traced = torch.jit.trace(module, (x,), check_trace=False)
    assert_same(module, traced, x)


def test_script_cell_and_packed_input_inside_scripted_code():
    torch.manual_seed(1)
    cell = lstm1997.LSTMCell(4, 6, activation="paper")
    x = torch.randn(3, 4)
    assert torch.equal(torch.jit.script(cell)(x)[1], cell(x)[1])

    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = lstm1997.LSTM(4, 6, num_layers=2, bidirectional=True)

        def forward(self, x: Tensor, lengths: Tensor):
            packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
            output, (h_n, _) = self.rnn(packed)
            return pad_packed_sequence(output)[0], h_n

    tagger = Tagger()
    x, lengths = torch.randn(7, 3, 4), torch.tensor([4, 7, 2])
    for a, b in zip(torch.jit.script(tagger)(x, lengths), tagger(x, lengths)):
        assert torch.equal(a, b)


LOAD_IN_FRESH_PROCESS = """
import sys, torch, lstm1997
model = torch.jit.load(sys.argv[1])
data = torch.load(sys.argv[2])
output, (h_n, s_n) = model(data["x"])
assert torch.equal(output, data["output"]) and torch.equal(s_n, data["s_n"]), "outputs differ"
output.sum().backward()
print("ok")
"""


@pytest.mark.parametrize("kind", ["script", "trace"])
def test_saved_model_loads_in_a_fresh_process(kind, tmp_path):
    module, x = make(CONFIGS[1])
    exported = (torch.jit.script(Holder(module)) if kind == "script"
                else torch.jit.trace(module, (x,), check_trace=False))
    exported.save(str(tmp_path / "model.pt"))
    output, (_, s_n) = module(x)
    torch.save({"x": x, "output": output.detach(), "s_n": s_n.detach()}, tmp_path / "data.pt")
    result = subprocess.run(
        [sys.executable, "-c", LOAD_IN_FRESH_PROCESS, str(tmp_path / "model.pt"), str(tmp_path / "data.pt")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize("config", CONFIGS[:2])
def test_compile_fullgraph_forward_and_backward(config):
    torch._dynamo.reset()
    module, x = make(config)
    compiled = torch.compile(module, fullgraph=True)  # fullgraph: any graph break is an error
    assert_same(module, compiled, x, exact=False)


def test_compile_has_no_graph_breaks_and_one_graph():
    torch._dynamo.reset()
    module, x = make(CONFIGS[1])
    explanation = torch._dynamo.explain(module)(x)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1


@pytest.mark.parametrize("config", CONFIGS[:2])
def test_export(config):
    module, x = make(config)
    program = torch.export.export(module, (x,))
    assert_same(module, program.module(), x, exact=False)


def test_export_with_dynamic_sequence_length():
    module, x = make({})
    seq_len = torch.export.Dim("seq_len", min=2, max=1000)
    program = torch.export.export(module, (x,), dynamic_shapes=({0: seq_len},))
    longer = torch.randn(20, 3, 4)
    assert torch.allclose(program.module()(longer)[0], module(longer)[0], atol=1e-6)


def test_functional_call_uses_the_substituted_parameters():
    module, x = make(CONFIGS[1])
    other = lstm1997.LSTM(4, 6, num_layers=2, bidirectional=True, batch_first=True).eval()
    substituted = torch.func.functional_call(module, dict(other.named_parameters()), (x,))
    assert torch.equal(substituted[0], other(x)[0])


def test_compile_for_inference():
    """Without autograd the op takes its inference kernel; compiled code takes it too."""
    torch._dynamo.reset()
    module, x = make(CONFIGS[1])
    compiled = torch.compile(module, fullgraph=True)
    with torch.no_grad():
        expected = module(x)[0]
        assert torch.allclose(compiled(x)[0], expected, atol=1e-6)
    with torch.inference_mode():
        assert torch.allclose(compiled(x)[0], expected, atol=1e-6)
