"""The bad-input tests under AddressSanitizer and the C++ tests under LeakSanitizer.

Both build sanitized copies of their own, outside the source tree and incrementally across runs
(tests/builds.py): the Python extension into build_dir("asan/python") (setup.py with
LSTM1997_SANITIZE=address; neither the installed package nor pip's build is touched), the CMake
project into build_dir("asan/cpp").
Deselect them with -m "not sanitizers"."""
import glob
import os
import re
import shlex
import subprocess
import sys

import pytest

from builds import ROOT, build_dir, cmake_build, run

pytestmark = pytest.mark.sanitizers

# Runs pytest after printing which lstm1997._C this interpreter loaded (before any conftest runs).
PYTEST = ("import sys, pytest, lstm1997._C; print('lstm1997._C from', lstm1997._C.__file__); "
          "sys.exit(pytest.main(sys.argv[1:]))")


def compiler_file(name):
    """Path of one of the C++ compiler's own libraries (the compiler that setup.py and CMake
    use), or None if it has none of that name."""
    compiler = shlex.split(os.environ.get("CXX", "c++"))
    path = run(compiler + [f"-print-file-name={name}"]).stdout.strip()
    return path if os.path.isabs(path) else None


@pytest.fixture(scope="module")
def libasan():
    path = compiler_file("libasan.so")
    if path is None:
        pytest.skip("the C++ compiler has no libasan")
    return path


def shown(output):
    """What a failed assertion shows: the first sanitizer report from its top, else the end."""
    found = re.search(r"ERROR: \w+Sanitizer", output)
    return output[found.start():][:20000] if found else output[-20000:]


def python_files(directory):
    return {os.path.relpath(p, directory) for p in glob.glob(f"{directory}/**/*.py", recursive=True)}


def test_bad_inputs_under_asan(libasan):
    build = build_dir(os.path.join("asan", "python"))
    lib = os.path.join(build, "lib")
    # --force: setuptools skips an extension none of whose .cpp files is newer than it, which
    # misses header edits; ninja then recompiles only what changed (its depfiles track headers).
    run([sys.executable, "setup.py", "build", "--force", "--build-base", build, "--build-lib", lib],
        cwd=ROOT, env={**os.environ, "LSTM1997_SANITIZE": "address"}, timeout=1800)
    package = os.path.join(lib, "lstm1997")
    assert python_files(os.path.join(ROOT, "python", "lstm1997")) <= python_files(package)
    (module,) = glob.glob(os.path.join(package, "_C*.so"))
    with open(module, "rb") as f:
        assert b"__asan_report_" in f.read(), f"{module} is not instrumented"

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (lib, os.environ.get("PYTHONPATH")) if p),
        # libasan must come first, as python itself is not instrumented. libstdc++ right after
        # it: python does not link libstdc++, so libasan, starting before it is loaded, would find
        # no __cxa_throw to wrap and abort at the first C++ exception, which every bad input
        # throws ("CHECK failed: ... real___cxa_throw != 0").
        "LD_PRELOAD": f"{libasan}:{compiler_file('libstdc++.so')}",
        # No leak check here: CPython and torch keep memory until exit (the C++ test below checks
        # for leaks). Any other finding stops the process.
        "ASAN_OPTIONS": "detect_leaks=0:halt_on_error=1:abort_on_error=1",
    }
    # The bad-input tables of every entry point, the unusual-but-valid inputs, and every kernel
    # path of gate feedback (its fed-back state buffer included).
    runs = [["tests/test_errors.py"], ["tests/test_reliability.py", "-k", "unusual"],
            ["tests/test_online.py", "-k", "error"],
            ["tests/test_gate_feedback.py", "-k", "op_matches or inference or packed or chunked"]]
    for tests in runs:
        # --capture=sys: ASan writes its report to file descriptor 2, which pytest's default
        # capture would hold back and lose when the report ends the process.
        result = subprocess.run([sys.executable, "-c", PYTEST, "-q", "-p", "no:cacheprovider",
                                 "--capture=sys", *tests], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=1200)
        output = result.stdout + result.stderr
        assert result.returncode == 0 and "ERROR: AddressSanitizer" not in output, shown(output)
        assert f"lstm1997._C from {module}\n" in output, output[-2000:]


def test_cpp_tests_under_lsan(libasan):
    build = cmake_build(build_dir(os.path.join("asan", "cpp")), "-DLSTM1997_SANITIZE=address")
    # The programs link libasan themselves. LeakSanitizer checks each at exit: libtorch (2.13)
    # reports nothing there, so no suppressions are needed. The Python that makes the fixtures
    # is not instrumented and ignores these options.
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1:halt_on_error=1"}
    result = subprocess.run(["ctest", "--test-dir", build, "--output-on-failure"], env=env,
                            capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Sanitizer" not in output, shown(output)
    assert "100% tests passed" in result.stdout, result.stdout
