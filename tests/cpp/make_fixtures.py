"""Inputs and expected values of the C++ tests, computed in Python; ctest runs this first.

    make_fixtures.py make DIR        write the fixtures into DIR
    make_fixtures.py check-cli DIR   compare DIR/cli_output.pt (from lstm1997_run) with Python's

Expected gradients come from the plain-loop reference in tests/reference.py, not from lstm1997
(CMakeLists.txt runs this with tests/ on PYTHONPATH).
Tensors for the C++ side are saved as buffers of a scripted module, which torch::jit::load reads.
"""
import os
import sys

import torch

import lstm1997
from reference import reference_lstm  # tests/reference.py: CMake puts tests/ on PYTHONPATH


class Tensors(torch.nn.Module):
    def __init__(self, tensors):
        super().__init__()
        for name, tensor in tensors.items():
            self.register_buffer(name, tensor.detach().contiguous())


def save_tensors(path, tensors):
    torch.jit.script(Tensors(tensors)).save(path)


class Regressor(torch.nn.Module):
    """The last output of a 1997 LSTM read out by a linear unit: trained from C++."""

    def __init__(self):
        super().__init__()
        self.rnn = lstm1997.LSTM(2, 8)
        self.head = torch.nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, _ = self.rnn(x)
        return self.head(output[-1]).squeeze(-1)


class Model(torch.nn.Module):
    """What C++ loads: a model holding the LSTM (TorchScript compiles the LSTM's overloaded
    forward where a caller picks one, as for torch.nn.LSTM)."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x: torch.Tensor):
        return self.rnn(x)


def make_model_fixtures(directory):
    torch.manual_seed(0)
    model = lstm1997.LSTM(3, 5, num_layers=2, bidirectional=True).eval()
    x = torch.randn(6, 2, 3)
    with torch.no_grad():
        output, (h_n, s_n) = model(x)
    torch.jit.script(Model(model)).save(os.path.join(directory, "model.pt"))
    save_tensors(os.path.join(directory, "model_io.pt"), {"x": x, "output": output, "h_n": h_n, "s_n": s_n})
    torch.save(x, os.path.join(directory, "input.pt"))


def make_op_fixtures(directory, filename, cells_per_block, gate_feedback=False):
    """Op inputs and the reference's results; with cells_per_block 2 the weights have the
    memory cell blocks' H + 2H/2 gate rows; with gate_feedback weight_hh, h0 and h_n have as many
    columns (the recurrent state of the paper's network)."""
    gen = torch.Generator().manual_seed(1)
    T, B, I, H = 5, 2, 3, 4
    G = H + 2 * (H // cells_per_block)
    R = G if gate_feedback else H
    rand = lambda *shape: torch.rand(*shape, generator=gen, dtype=torch.float64) - 0.5
    inputs = {"input": rand(T, B, I), "weight_ih": rand(G, I), "weight_hh": rand(G, R),
              "bias_ih": rand(G), "bias_hh": rand(G), "h0": rand(B, R), "s0": rand(B, H)}
    upstream = {"grad_output": rand(T, B, H), "grad_h_n": rand(B, R), "grad_s_n": rand(B, H)}
    tensors = {**inputs, **upstream}
    for mode, truncate in (("truncated", True), ("exact", False)):
        leaves = {name: t.clone().requires_grad_() for name, t in inputs.items()}
        output, h_n, s_n = reference_lstm(*leaves.values(), truncate=truncate,
                                          gate_feedback=gate_feedback,
                                          cells_per_block=cells_per_block)
        loss = ((output * upstream["grad_output"]).sum() + (h_n * upstream["grad_h_n"]).sum()
                + (s_n * upstream["grad_s_n"]).sum())
        loss.backward()
        for name, leaf in leaves.items():
            grad = leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)
            tensors[f"{mode}_{name}"] = grad
        tensors["output"] = output
    save_tensors(os.path.join(directory, filename), tensors)


def make_train_fixtures(directory):
    torch.manual_seed(2)
    model = Regressor()
    x = torch.randn(10, 32, 2)
    target = x[:, :, 0].mean(0)  # the running mean of the first input: a sum the carousel keeps
    torch.jit.script(model).save(os.path.join(directory, "train_model.pt"))
    save_tensors(os.path.join(directory, "train.pt"), {"x": x, "target": target})


def check_cli(directory):
    output = torch.load(os.path.join(directory, "cli_output.pt"))
    expected = torch.jit.load(os.path.join(directory, "model_io.pt")).output
    if output.shape != expected.shape or not torch.allclose(output, expected, atol=1e-5, rtol=1e-5):
        sys.exit(f"lstm1997_run wrote {tuple(output.shape)} values differing from Python's by "
                 f"{(output - expected).abs().max().item() if output.shape == expected.shape else 'shape'}")
    print("lstm1997_run output equals Python's")


def main():
    command, directory = sys.argv[1], sys.argv[2]
    if command == "make":
        os.makedirs(directory, exist_ok=True)
        make_model_fixtures(directory)
        make_op_fixtures(directory, "op.pt", cells_per_block=1)
        make_op_fixtures(directory, "op_blocks.pt", cells_per_block=2)
        make_op_fixtures(directory, "op_feedback.pt", cells_per_block=2, gate_feedback=True)
        make_train_fixtures(directory)
        print(f"fixtures written to {directory}")
    elif command == "check-cli":
        check_cli(directory)
    else:
        sys.exit(f"unknown command {command!r}: expected make or check-cli")


if __name__ == "__main__":
    main()
