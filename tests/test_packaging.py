"""How the package is built: tools/build_flags.py, the one source of the SIMD and sanitizer flags
of setup.py and CMake, and the version, set once (lstm1997.__version__, read by setup.cfg)."""
import configparser
import importlib.metadata
import importlib.util
import os
import subprocess
import sys

import pytest

import lstm1997

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tools", "build_flags.py")
spec = importlib.util.spec_from_file_location("build_flags", SCRIPT)
build_flags = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_flags)

AVX512 = {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx2", "fma", "f16c"}
AVX2 = {"avx2", "fma", "f16c"}


@pytest.mark.parametrize("choice", ["1", "ON", "on", "TRUE"])
def test_the_best_level_the_machine_has(choice):
    flags = build_flags.simd_flags(choice, features=AVX512, machine="x86_64")
    assert "-DCPU_CAPABILITY=AVX512" in flags and "-mavx512f" in flags
    flags = build_flags.simd_flags(choice, features=AVX2, machine="x86_64")
    assert "-DCPU_CAPABILITY=AVX2" in flags and not any("avx512" in f for f in flags)
    assert build_flags.simd_flags(choice, features={"sse4_2"}, machine="x86_64") == []


def test_avx2_caps_and_off_is_portable():
    flags = build_flags.simd_flags("AVX2", features=AVX512, machine="x86_64")
    assert "-DCPU_CAPABILITY=AVX2" in flags and not any("avx512" in f for f in flags)
    for off in ("0", "OFF", "false"):
        assert build_flags.simd_flags(off, features=AVX512, machine="x86_64") == []
    assert build_flags.simd_flags("1", features=AVX512, machine="aarch64") == []


def test_sanitizer_flags():
    assert build_flags.sanitize_flags("") == ([], [])
    compile_flags, link_flags = build_flags.sanitize_flags("address")
    assert "-fsanitize=address" in compile_flags and link_flags == ["-fsanitize=address"]


def test_bad_choices_are_named():
    with pytest.raises(ValueError, match=r"LSTM1997_SIMD: expected 1 \(ON\), avx2 or 0 \(OFF\), got 'avx9'"):
        build_flags.simd_flags("avx9")
    with pytest.raises(ValueError, match="LSTM1997_SANITIZE: expected address"):
        build_flags.sanitize_flags("thread")


def test_command_line_prints_a_cmake_list():
    def run(*args):
        return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)

    result = run("sanitize", "address")
    assert result.returncode == 0
    assert result.stdout.strip() == ";".join(build_flags.sanitize_flags("address")[0])
    assert run("sanitize-link", "address").stdout.strip() == "-fsanitize=address"
    assert run("simd", "OFF").stdout.strip() == ""
    bad = run("simd", "avx9")
    assert bad.returncode != 0 and "LSTM1997_SIMD" in bad.stderr


def test_the_version_is_set_once():
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    assert config["metadata"]["version"] == "attr: lstm1997.__version__"
    assert importlib.metadata.version("lstm1997") == lstm1997.__version__
