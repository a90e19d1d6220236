"""Builds that tests make (CMake projects, a sanitized extension), and where they go: outside the
source tree, in LSTM1997_TEST_BUILD_DIR if set, else in the user's cache directory, one folder per
checkout, so that later runs rebuild only what changed."""
import hashlib
import os
import shutil
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_dir(name):
    base = os.environ.get("LSTM1997_TEST_BUILD_DIR")
    if not base:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        checkout = hashlib.sha1(ROOT.encode()).hexdigest()[:12]
        base = os.path.join(cache, "lstm1997-tests", checkout)
    return os.path.join(base, name)


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
