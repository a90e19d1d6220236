// How the online kernels (online_step.cpp, online_one_step.cpp) find a trace row in memory.
//
// A trace is (B, 2H, width) (the bias trace (B, 2H), width 1): row r of batch row b lies at
// b * batch + r * row from its first value, its features one after another. The kernels take
// either order of the first two dimensions: (B, 2H, width) as it is, or gate row by gate row,
// (2H, B, width) in memory seen as (B, 2H, width), which OnlineLSTM allocates for wide traces.
// The update's pass visits a gate row's trace rows of every batch row together; laid out gate row
// by gate row, they are one stretch of memory, where the other order puts them a batch row's
// whole trace apart (benchmarks/README.md, "Issue #20, eighth session").
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace lstm1997 {
namespace cpu {

struct TraceStrides {
  int64_t batch, row;
};

// Whether the kernels can take this trace in place: its values dense (no gaps and no overlap: the
// pass writes each once) and each row's features next to each other. Any other (a strided view)
// goes through ATen's in-place ops. Called before the argument checks: anything of the wrong
// rank is left to the ATen path, whose checks name it.
inline bool kernel_trace(const at::Tensor& trace) {
  return (trace.dim() == 2 || trace.dim() == 3) && trace.is_non_overlapping_and_dense() &&
         (trace.dim() == 2 || trace.size(2) == 1 || trace.stride(2) == 1);
}

// The strides of a trace that kernel_trace accepted.
inline TraceStrides trace_strides(const at::Tensor& trace) {
  return {trace.stride(0), trace.stride(1)};
}

}  // namespace cpu
}  // namespace lstm1997
