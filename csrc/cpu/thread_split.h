// How the CPU kernels split their work between threads: pieces of the (batch row, cell) grid for
// at::parallel_for, and slices of it for the small-layer loops, which run a whole time loop in
// one parallel region.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace lstm1997 {
namespace cpu {

// Enough elements per task that at::parallel_for's overhead stays small.
constexpr int64_t kElementsPerTask = 8192;

// Runs fn(b, j_begin, j_end) over the (batch row, hidden unit) cells in [begin, end) of a
// row-major (B, H) grid, one call per piece of a row, so that tasks may split rows (B can be 1).
template <typename Fn>
inline void for_each_row_piece(int64_t begin, int64_t end, int64_t hidden_size, const Fn& fn) {
  for (int64_t cell = begin; cell < end;) {
    const int64_t b = cell / hidden_size;
    const int64_t j_begin = cell - b * hidden_size;
    const int64_t j_end = std::min(hidden_size, j_begin + (end - cell));
    fn(b, j_begin, j_end);
    cell += j_end - j_begin;
  }
}

// The time loops of small layers run in one OpenMP parallel region for all their steps. Each
// thread owns a share of the (batch row, cell) grid, either
//  - a slice of the batch rows, all cells: batch rows are independent sequences, so a thread then
//    runs its rows through every step without waiting for the others (each thread reads all of
//    W_hh, and W_ih when the input product is folded in, at every step); used whenever every
//    thread gets a few rows;
//  - or a slice of the cells (whole SIMD vectors of them), all rows: a step then reads what every
//    thread wrote at the step before, so the threads meet at one barrier per step (step_barrier).
// The per-step path instead pays a GEMM library call and a parallel region per step, which at
// B = 16, H = 128 cost as much as the step's arithmetic. Either split computes each value the same
// way, in the same order, so the results do not depend on it or on the thread count.
struct GridSlice {
  int64_t b_begin, b_end;  // batch rows
  int64_t j_begin, j_end;  // cells
  bool by_rows;            // when true, no thread reads what another writes: no barrier needed
};

// Fewer rows per thread than this and the layer is split by cells instead.
constexpr int64_t kMinRowsPerThread = 4;

// Runs fn(slice) on every thread of one parallel region (serially, as one slice, without OpenMP
// or inside another parallel region).
template <typename scalar_t, typename Fn>
void for_grid_slices(int64_t B, int64_t H, const Fn& fn) {
  constexpr int64_t L = at::vec::Vectorized<scalar_t>::size();
  const int64_t vectors = (H + L - 1) / L;
  int64_t threads = 1;
#ifdef _OPENMP
  if (!at::in_parallel_region()) {
    threads = at::get_num_threads();
  }
#endif
  const bool by_rows = B >= kMinRowsPerThread * threads;
  threads = std::max<int64_t>(1, std::min(threads, by_rows ? B : vectors));
  const auto run = [&](int64_t thread, int64_t count) {
    if (by_rows) {
      fn(GridSlice{B * thread / count, B * (thread + 1) / count, 0, H, true});
    } else {
      fn(GridSlice{0, B, std::min(H, vectors * thread / count * L),
                   std::min(H, vectors * (thread + 1) / count * L), false});
    }
  };
#ifdef _OPENMP
  if (threads > 1) {
#pragma omp parallel num_threads(static_cast<int>(threads))
    run(omp_get_thread_num(), omp_get_num_threads());
    return;
  }
#endif
  run(0, 1);
}

// Where a step reads what the other threads wrote at the step before.
inline void step_barrier(const GridSlice& slice) {
#ifdef _OPENMP
  if (!slice.by_rows) {
#pragma omp barrier
  }
#endif
}


}  // namespace cpu
}  // namespace lstm1997
