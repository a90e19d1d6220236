"""The compiler flags of the op library that depend on a build choice: the SIMD level of the CPU
kernels and the sanitizer. The one source of truth for both builds: setup.py imports this file,
CMakeLists.txt runs it.

    python tools/build_flags.py simd CHOICE        compile flags for the SIMD level
    python tools/build_flags.py sanitize NAME      compile flags for the sanitizer
    python tools/build_flags.py sanitize-link NAME link flags for the sanitizer

CHOICE: 1 (or ON): this machine's AVX-512, else its AVX2, else portable code; avx2: at most AVX2;
0 (or OFF): portable code (for a binary meant for other machines). pip builds this package from
source, on the machine that runs it. NAME: address (AddressSanitizer, which includes
LeakSanitizer) or empty for none. Flags print as a CMake list (separated by ';').
"""
import platform
import sys

# (level, the /proc/cpuinfo flags it needs, its compiler flags), best first. CPU_CAPABILITY tells
# at::vec which vector types to use; Sleef's functions for them are exported by libtorch.
SIMD_LEVELS = [
    ("avx512", {"avx512f", "avx512bw", "avx512vl", "avx512dq", "fma", "f16c"},
     ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c",
      "-DCPU_CAPABILITY=AVX512", "-DCPU_CAPABILITY_AVX512"]),
    ("avx2", {"avx2", "fma", "f16c"},
     ["-mavx2", "-mfma", "-mf16c", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"]),
]

SIMD_CHOICES = {"1": "1", "on": "1", "true": "1", "avx2": "avx2",
                "0": "0", "off": "0", "false": "0"}


def cpu_features(path="/proc/cpuinfo"):
    try:
        with open(path) as f:
            return set(f.read().split())
    except OSError:
        return set()


def simd_flags(choice="1", features=None, machine=None):
    """Compile flags for the SIMD level `choice` allows and the machine has."""
    level = SIMD_CHOICES.get(str(choice).lower())
    if level is None:
        raise ValueError(f"LSTM1997_SIMD: expected 1 (ON), avx2 or 0 (OFF), got {choice!r}")
    machine = platform.machine() if machine is None else machine
    if level == "0" or machine not in ("x86_64", "AMD64"):
        return []
    features = cpu_features() if features is None else features
    for name, needed, flags in SIMD_LEVELS:
        if (level == "1" or name == level) and needed <= features:
            return flags
    return []


def sanitize_flags(sanitizer=""):
    """(compile flags, link flags). Frame pointers and -g give the sanitizer's reports whole stack
    traces with file:line; -O1 (after any -O3) so that inlining hides no frame."""
    if sanitizer not in ("", "address"):
        raise ValueError(f"LSTM1997_SANITIZE: expected address (or empty), got {sanitizer!r}")
    if not sanitizer:
        return [], []
    return ["-fsanitize=address", "-fno-omit-frame-pointer", "-g", "-O1"], ["-fsanitize=address"]


def main(argv):
    if len(argv) not in (1, 2) or argv[0] not in ("simd", "sanitize", "sanitize-link"):
        raise SystemExit(__doc__)
    value = argv[1] if len(argv) == 2 else ""
    try:
        if argv[0] == "simd":
            flags = simd_flags(value or "1")
        else:
            flags = sanitize_flags(value)[0 if argv[0] == "sanitize" else 1]
    except ValueError as error:
        raise SystemExit(str(error))
    print(";".join(flags))


if __name__ == "__main__":
    main(sys.argv[1:])
