// The CPU kernel of lstm_online_step_: online.cpp's online_step with a trace pass that reads and
// writes every row of the traces once. Each row trace[b, r, :] is read, its sum with the carried
// error taken (the gradient through the steps before the chunk needs the traces as they come in),
// the chunk's terms added, and written back: the traces (B * 2H * (I + R + 1) values, 12 MB at
// B = 16, I = 128, H = 256) are the whole memory traffic of an online step, and ATen ops would
// cross them three to five times (benchmarks/bench.py, online table).
// Threads split the traced rows r: each owns its rows of the gradient sums, so the result does
// not depend on the thread count.
#include "../generic/kernels.h"
#include "../online.h"
#include "kernels.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

namespace lstm1997 {
namespace cpu {
namespace {

// One row of a trace (width features): sum += error * row; row += sum_t local_t * features_t.
template <typename scalar_t>
inline void pass_row(scalar_t* row, int64_t width, scalar_t error, scalar_t* sum,
                     const scalar_t* local, int64_t local_stride, const scalar_t* features,
                     int64_t features_stride, int64_t steps) {
  using Vec = at::vec::Vectorized<scalar_t>;
  constexpr int64_t L = Vec::size();
  int64_t f = 0;
  for (; f + L <= width; f += L) {
    Vec value = Vec::loadu(row + f);
    if (sum != nullptr) {
      at::vec::fmadd(Vec(error), value, Vec::loadu(sum + f)).store(sum + f);
    }
    for (int64_t t = 0; t < steps; ++t) {
      value = at::vec::fmadd(Vec(local[t * local_stride]),
                             Vec::loadu(features + t * features_stride + f), value);
    }
    value.store(row + f);
  }
  for (; f < width; ++f) {
    scalar_t value = row[f];
    if (sum != nullptr) {
      sum[f] += error * value;
    }
    for (int64_t t = 0; t < steps; ++t) {
      value += local[t * local_stride] * features[t * features_stride + f];
    }
    row[f] = value;
  }
}

template <typename scalar_t>
void trace_pass_typed(TracePass& pass) {
  const int64_t B = pass.trace_ih.size(0), traced = pass.trace_ih.size(1),
                I = pass.trace_ih.size(2), R = pass.trace_hh.size(2);
  const int64_t T = pass.advance ? pass.local.size(0) : 0;
  scalar_t* trace_ih = pass.trace_ih.data_ptr<scalar_t>();
  scalar_t* trace_hh = pass.trace_hh.data_ptr<scalar_t>();
  scalar_t* trace_bias = pass.trace_bias.data_ptr<scalar_t>();
  const bool sums = pass.carried_error.defined();
  const scalar_t* error = sums ? pass.carried_error.const_data_ptr<scalar_t>() : nullptr;
  scalar_t* sum_ih = sums ? pass.grad_traced_ih.data_ptr<scalar_t>() : nullptr;
  scalar_t* sum_hh = sums ? pass.grad_traced_hh.data_ptr<scalar_t>() : nullptr;
  scalar_t* sum_bias = sums ? pass.grad_traced_bias.data_ptr<scalar_t>() : nullptr;
  const scalar_t* local = T > 0 ? pass.local.const_data_ptr<scalar_t>() : nullptr;
  const scalar_t* input = T > 0 ? pass.input.const_data_ptr<scalar_t>() : nullptr;
  const scalar_t* previous = T > 0 ? pass.previous.const_data_ptr<scalar_t>() : nullptr;
  const scalar_t one(1);
  // Rows per task: enough values that a task outweighs its hand-off (as at::parallel_for's users
  // in ATen size theirs).
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, B * (I + R + 1)));
  at::parallel_for(0, traced, grain, [&](int64_t r_begin, int64_t r_end) {
    for (int64_t r = r_begin; r < r_end; ++r) {
      for (int64_t b = 0; b < B; ++b) {
        const scalar_t e = sums ? error[b * traced + r] : scalar_t(0);
        // local[t, b, r] for t = 0, 1, ...: stride B * traced.
        const scalar_t* row_local = local == nullptr ? nullptr : local + b * traced + r;
        const int64_t local_stride = B * traced;
        pass_row(trace_ih + (b * traced + r) * I, I, e, sums ? sum_ih + r * I : nullptr,
                 row_local, local_stride, input == nullptr ? nullptr : input + b * I, B * I, T);
        pass_row(trace_hh + (b * traced + r) * R, R, e, sums ? sum_hh + r * R : nullptr,
                 row_local, local_stride, previous == nullptr ? nullptr : previous + b * R, B * R,
                 T);
        pass_row(trace_bias + b * traced + r, 1, e, sums ? sum_bias + r : nullptr, row_local,
                 local_stride, &one, 0, T);
      }
    }
  });
}

}  // namespace

void online_trace_pass(TracePass& pass) {
  const at::ScalarType dtype = pass.trace_ih.scalar_type();
  const bool contiguous = pass.trace_ih.is_contiguous() && pass.trace_hh.is_contiguous() &&
                          pass.trace_bias.is_contiguous();
  if ((dtype != at::kFloat && dtype != at::kDouble) || !contiguous) {
    // (A trace that is a strided view is updated through ATen's in-place ops.)
    return online_aten_trace_pass(pass);
  }
  AT_DISPATCH_FLOATING_TYPES(dtype, "lstm1997_online_trace_pass_cpu",
                             [&] { trace_pass_typed<scalar_t>(pass); });
}

}  // namespace cpu
}  // namespace lstm1997

namespace lstm1997 {
namespace {

// Under LSTM1997_GENERIC=1 the CPU runs the ATen pass too (the generic implementation's).
void cpu_or_generic_trace_pass(TracePass& pass) {
  if (generic::forced_on_cpu()) {
    return online_aten_trace_pass(pass);
  }
  cpu::online_trace_pass(pass);
}

}  // namespace

TORCH_LIBRARY_IMPL(lstm1997, CPU, m) {
  m.impl("lstm_online_step_", &online_step_kernel<&cpu_or_generic_trace_pass>);
}

}  // namespace lstm1997
