"""Builds the lstm1997._C op library with torch.utils.cpp_extension against the installed torch.

CUDA sources (csrc/cuda/*.cu) are compiled when the installed torch has CUDA and a CUDA toolkit is
found; on a CPU-only torch they are skipped and the CPU kernels alone are built.
Set LSTM1997_DEBUG=1 for an unoptimised build with debug symbols.

The CPU kernels use at::vec for their pointwise math. When the build machine has AVX-512 (F, BW, VL,
DQ) or else AVX2 and FMA (x86-64), they are compiled for them: pip builds this package from source,
on the machine that runs it. LSTM1997_SIMD=avx2 stops at AVX2; LSTM1997_SIMD=0 builds portable code
(for a binary meant for other machines).

LSTM1997_SANITIZE=address builds for AddressSanitizer (tests/test_sanitizers.py does, into its own
build directory); Python must then load libasan first: LD_PRELOAD=$(gcc -print-file-name=libasan.so).
"""
import glob
import os
import platform

from setuptools import setup
from torch.utils import cpp_extension

ROOT = os.path.dirname(os.path.abspath(__file__))


def sources(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def simd_flags():
    """Compiler flags that let at::vec use AVX-512 or AVX2 (and Sleef's functions for them, which
    libtorch exports) when this machine has it; CMakeLists.txt makes the same choice."""
    choice = os.environ.get("LSTM1997_SIMD", "1")
    if choice not in ("0", "1", "avx2"):
        raise SystemExit(f"LSTM1997_SIMD: expected 0, 1 or avx2, got {choice!r}")
    if choice == "0" or platform.machine() not in ("x86_64", "AMD64"):
        return []
    try:
        with open("/proc/cpuinfo") as f:
            features = set(f.read().split())
    except OSError:
        return []
    if choice == "1" and {"avx512f", "avx512bw", "avx512vl", "avx512dq", "fma", "f16c"} <= features:
        return ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c",
                "-DCPU_CAPABILITY=AVX512", "-DCPU_CAPABILITY_AVX512"]
    if {"avx2", "fma", "f16c"} <= features:
        return ["-mavx2", "-mfma", "-mf16c", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"]
    return []


def sanitize_flags():
    """Compile and link flags for LSTM1997_SANITIZE (CMakeLists.txt's option of that name adds the
    same). Frame pointers and -g give ASan's reports whole stack traces, with file:line."""
    sanitizer = os.environ.get("LSTM1997_SANITIZE", "")
    if sanitizer not in ("", "address"):
        raise SystemExit(f"LSTM1997_SANITIZE: expected address (or unset), got {sanitizer!r}")
    return ["-fsanitize=address", "-fno-omit-frame-pointer", "-g"] if sanitizer else []


def extension():
    debug = os.environ.get("LSTM1997_DEBUG", "0") == "1"
    sanitize = sanitize_flags()
    # Under ASan, -O1: -O3 would inline away the frames a report names, -O0 is needlessly slow.
    cxx_flags = ["-O0", "-g"] if debug else ["-O1"] if sanitize else ["-O3"]
    # at::parallel_for expands to OpenMP pragmas in the header: without -fopenmp it runs serially.
    cxx_flags += ["-fopenmp", "-std=c++17"] + simd_flags() + sanitize
    cpu_sources = sources("csrc/*.cpp") + sources("csrc/cpu/*.cpp")
    cuda_sources = sources("csrc/cuda/*.cu")
    use_cuda = bool(cuda_sources) and torch_has_cuda() and cpp_extension.CUDA_HOME is not None
    if use_cuda:
        return cpp_extension.CUDAExtension(
            "lstm1997._C",
            cpu_sources + cuda_sources,
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "--use_fast_math"]},
            extra_link_args=["-fopenmp"] + sanitize,
        )
    return cpp_extension.CppExtension(
        "lstm1997._C",
        cpu_sources,
        extra_compile_args={"cxx": cxx_flags},
        extra_link_args=["-fopenmp"] + sanitize,
    )


def torch_has_cuda():
    import torch

    return torch.version.cuda is not None


setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
)
