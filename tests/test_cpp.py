"""The C++ side: CMake builds the op library, the CLI and the C++ tests; ctest runs them.

The build goes to build/cpp in the repository (incremental across runs)."""
import os
import shutil
import subprocess
import sys

import pytest
import torch

import lstm1997

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build", "cpp")


def run(args, **kwargs):
    result = subprocess.run(args, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-5000:]}\n{result.stderr[-5000:]}"
    return result


def cmake_build(build, *options):
    """Configures the project into `build` against the installed torch (with this Python making
    the fixtures), with extra `options` (-D...), builds it and returns `build`."""
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake is not installed")
    configure = [cmake, "-S", ROOT, "-B", build, f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
                 f"-DPython3_EXECUTABLE={sys.executable}", *options]
    if shutil.which("ninja") and not os.path.exists(os.path.join(build, "CMakeCache.txt")):
        configure += ["-G", "Ninja"]
    run(configure)
    run([cmake, "--build", build, "-j", str(max(2, os.cpu_count() or 2))], timeout=1800)
    return build


@pytest.fixture(scope="module")
def build_dir():
    return cmake_build(BUILD)


def test_ctest(build_dir):
    result = run(["ctest", "--test-dir", build_dir, "--output-on-failure"], timeout=600)
    assert "100% tests passed" in result.stdout, result.stdout


def test_cli(build_dir, tmp_path):
    cli = os.path.join(build_dir, "lstm1997_run")
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
