#!/usr/bin/env bash
# The checks that need a GPU, in one run on a CUDA machine (see README, "Devices"): build the op
# library in place against that machine's torch, run the CUDA tests, time the layer on the GPU
# against torch.nn.LSTM (cuDNN), then the whole test suite on that torch. Logs go to $OUT (or ./gpu_check).
# Usage: bash tools/gpu_check.sh [seconds for the whole suite, default 240; 0 skips it]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu_check}
mkdir -p "$out"
suite_seconds=${1:-240}
python=$(command -v python3 || command -v python)
# On the lent H200 machines torch's build picks a compiler wrapper, /opt/gcc/bin/g++, that links
# parts of its own libstdc++ into what it builds: a torch extension built with it, even a minimal load_inline
# one, crashes as soon as it formats an integer (std::ostream::operator<<(long)), so every error
# message with a size in it killed the process. The distribution's compiler does not do this.
if [ -d /opt/gcc/bin ]; then
    for candidate in /usr/bin/g++-13 /usr/bin/g++; do
        if [ -x "$candidate" ]; then
            export CXX=$candidate CC=${candidate/g++/gcc} LDSHARED="${candidate/g++/gcc} -shared"
            break
        fi
    done
fi
echo "compiler: ${CXX:-$(command -v c++)}"
nvidia-smi -L
"$python" -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.version.cuda, torch.cuda.get_device_name())"
start=$SECONDS
if ! MAX_JOBS=$(nproc) "$python" setup.py build_ext --inplace >"$out/build.log" 2>&1; then
    tail -40 "$out/build.log"; exit 1
fi
echo "built in $((SECONDS - start)) s"
export PYTHONPATH=$PWD/python
"$python" -m pytest -q -rs -p no:cacheprovider tests/test_generic.py -k cuda 2>&1 | tee "$out/cuda_tests.log" | tail -25
"$python" benchmarks/bench.py --cuda --json "$out/cuda_bench.json" 2>&1 | tee "$out/cuda_bench.log"
if [ "$suite_seconds" -gt 0 ]; then
    timeout "$suite_seconds" "$python" -m pytest -q -p no:cacheprovider -n "$(nproc)" tests \
        >"$out/suite.log" 2>&1
    echo "suite exit $?"; tail -30 "$out/suite.log"
fi
