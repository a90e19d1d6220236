// The float32 squashers of the CPU kernels (csrc/cpu/vec_math.h, through cell_math.h's sigmoid and
// Squash) on their own: their largest absolute error against float64 at every 97th float32 bit
// pattern, and their latency as a chain of dependent calls (each call's result the next one's
// argument: what a recurrent step waits for), ns per call. AVX-512 builds only.
//
//   g++ -O3 -mavx512f -mavx512dq -mavx512bw -mavx512vl -mfma -DCPU_CAPABILITY_AVX512 \
//       -DCPU_CAPABILITY=AVX512 -std=c++17 -I csrc $(python -c "import torch.utils.cpp_extension \
//       as e; print(' '.join('-I' + p for p in e.include_paths()))") \
//       benchmarks/squash_chain.cpp -o /tmp/squash_chain && /tmp/squash_chain
#include "cpu/vec_math.h"

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace {

using Vec = at::vec::Vectorized<float>;

Vec sigmoid(Vec x) { return lstm1997::sigmoid(x); }
Vec tanh(Vec x) { return lstm1997::Squash<float>{1, 1}(x); }
Vec paper_g(Vec x) { return lstm1997::Squash<float>{2, 0.5}(x); }
Vec paper_h(Vec x) { return lstm1997::Squash<float>{1, 0.5}(x); }

double largest_error(Vec (*squash)(Vec), double (*reference)(double), float* where) {
  double largest = 0;
  alignas(64) float in[Vec::size()], out[Vec::size()];
  int filled = 0;
  for (uint64_t bits = 0; bits < (uint64_t{1} << 32); bits += 97) {
    const auto pattern = static_cast<uint32_t>(bits);
    std::memcpy(&in[filled++], &pattern, sizeof(float));
    if (filled < Vec::size()) {
      continue;
    }
    squash(Vec::loadu(in)).store(out);
    for (int k = 0; k < Vec::size(); ++k) {
      const double expected = reference(in[k]);
      if (std::isnan(expected) != std::isnan(out[k])) {
        std::printf("NaN where the reference has none, or none where it has, at %g\n", in[k]);
      }
      if (!std::isnan(expected) && std::fabs(out[k] - expected) > largest) {
        largest = std::fabs(out[k] - expected);
        *where = in[k];
      }
    }
    filled = 0;
  }
  return largest;
}

double chain_ns(Vec (*squash)(Vec)) {
  constexpr int kCalls = 20000000;
  Vec x(0.3f);
  const auto start = std::chrono::steady_clock::now();
  for (int k = 0; k < kCalls; ++k) {
    x = squash(x);
  }
  const auto stop = std::chrono::steady_clock::now();
  alignas(64) float last[Vec::size()];
  x.store(last);
  std::printf("%s", last[0] == 1234.0f ? " " : "");  // keeps the chain
  return std::chrono::duration<double, std::nano>(stop - start).count() / kCalls;
}

}  // namespace

int main() {
  const struct {
    const char* name;
    Vec (*squash)(Vec);
    double (*reference)(double);
  } squashers[] = {
      {"sigmoid", sigmoid, [](double x) { return 1 / (1 + std::exp(-x)); }},
      {"tanh", tanh, [](double x) { return std::tanh(x); }},
      {"paper g", paper_g, [](double x) { return 2 * std::tanh(x / 2); }},
      {"paper h", paper_h, [](double x) { return std::tanh(x / 2); }},
  };
  for (const auto& s : squashers) {
    float where = 0;
    const double error = largest_error(s.squash, s.reference, &where);
    std::printf("%-8s largest error %.3g (at %g); chain %.2f ns per call", s.name, error, where,
                chain_ns(s.squash));
    std::printf(", %.2f, %.2f\n", chain_ns(s.squash), chain_ns(s.squash));
  }
}
