"""Builds the lstm1997._C op library with torch.utils.cpp_extension against the installed torch.

The kernels are C++: the CPU's own (csrc/cpu), and a device-generic implementation of ATen ops
(csrc/generic) that every other device runs, CUDA included; there is no CUDA code of its own yet.
LSTM1997_DEBUG=1 builds without optimisation and with debug symbols. LSTM1997_SIMD (1, avx2 or 0)
and LSTM1997_SANITIZE (address) choose the SIMD level and the sanitizer as tools/build_flags.py
describes; CMakeLists.txt reads the same file. Under ASan, Python must load libasan first:
LD_PRELOAD=$(gcc -print-file-name=libasan.so).
"""
import glob
import importlib.util
import os

from setuptools import setup
from torch.utils import cpp_extension

ROOT = os.path.dirname(os.path.abspath(__file__))


def load_build_flags():
    spec = importlib.util.spec_from_file_location(
        "build_flags", os.path.join(ROOT, "tools", "build_flags.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sources(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def extension():
    build_flags = load_build_flags()
    try:
        simd = build_flags.simd_flags(os.environ.get("LSTM1997_SIMD", "1"))
        sanitize_compile, sanitize_link = build_flags.sanitize_flags(
            os.environ.get("LSTM1997_SANITIZE", ""))
    except ValueError as error:
        raise SystemExit(str(error))
    debug = os.environ.get("LSTM1997_DEBUG", "0") == "1"
    # at::parallel_for expands to OpenMP pragmas in the header: without -fopenmp it runs serially.
    cxx_flags = (["-O0", "-g"] if debug else ["-O3"]) + ["-fopenmp", "-std=c++17"]
    return cpp_extension.CppExtension(
        "lstm1997._C",
        sources("csrc/*.cpp") + sources("csrc/cpu/*.cpp") + sources("csrc/generic/*.cpp"),
        extra_compile_args={"cxx": cxx_flags + simd + sanitize_compile},
        extra_link_args=["-fopenmp"] + sanitize_link,
    )


setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
)
