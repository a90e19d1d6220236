"""The C++ side: CMake builds the op library, the CLI and the C++ tests; ctest runs them.

The build goes to builds.build_dir("cpp"), outside the source tree (incremental across runs)."""
import os
import subprocess

import pytest
import torch

import lstm1997
from builds import build_dir, cmake_build, run


@pytest.fixture(scope="module")
def cpp_build():
    return cmake_build(build_dir("cpp"))


@pytest.mark.parametrize("generic", ["0", "1"])
def test_ctest(cpp_build, monkeypatch, generic):
    """The C++ tests (a LibTorch program that trains through TorchScript included), on the CPU
    kernels and on the device-generic implementation that every other device runs."""
    monkeypatch.setenv("LSTM1997_GENERIC", generic)
    result = run(["ctest", "--test-dir", cpp_build, "--output-on-failure"], timeout=600)
    assert "100% tests passed" in result.stdout, result.stdout


def test_cli(cpp_build, tmp_path):
    cli = os.path.join(cpp_build, "lstm1997_run")
    torch.manual_seed(0)
    model = lstm1997.LSTM(3, 4, batch_first=True, activation="paper").eval()
    x = torch.randn(2, 5, 3)
    torch.jit.trace(model, (x,), check_trace=False).save(str(tmp_path / "model.pt"))
    torch.save(x, tmp_path / "input.pt")
    printed = run([cli, str(tmp_path / "model.pt"), str(tmp_path / "input.pt")]).stdout
    assert "[ CPUFloatType{2,5,4} ]" in printed
    run([cli, str(tmp_path / "model.pt"), str(tmp_path / "input.pt"), str(tmp_path / "out.pt")])
    with torch.no_grad():
        assert torch.allclose(torch.load(tmp_path / "out.pt"), model(x)[0], atol=1e-6)

    usage = subprocess.run([cli], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage:" in usage.stderr
    torch.save({"not": "a tensor"}, tmp_path / "dict.pt")
    wrong = subprocess.run([cli, str(tmp_path / "model.pt"), str(tmp_path / "dict.pt")], capture_output=True, text=True)
    assert wrong.returncode == 1 and "INPUT: expected a tensor" in wrong.stderr
    missing = subprocess.run([cli, str(tmp_path / "model.pt"), str(tmp_path / "nope.pt")], capture_output=True, text=True)
    assert missing.returncode == 1 and "cannot open" in missing.stderr
