// Matrix products for the time steps of small layers, run by the calling thread alone.
//
// At B = 16, H = 128 a step's product is 0.8M multiply-adds: a few microseconds of arithmetic,
// while a call into a GEMM library (and the parallel region it opens) costs about as much again.
// The small-layer loops (small_layer.h) instead give each thread a share of the step and call
// these kernels inside one long-lived parallel region:
//  - small_gemm_grouped, for the forward: the three gates' net inputs of a tile of cells, kept in
//    registers and handed to the caller's cell step (the epilogue), so they never reach memory;
//  - small_gemm_accumulate, for the exact backward: C += A B into memory.
//
// The right-hand matrix is packed once per pass into column panels (pack_panels,
// pack_grouped_panels): one SIMD vector of columns, all K rows, contiguous. Read in place, a
// weight row of 3H floats is a stride of a few KiB, and the rows of a tile then fall into a few
// L1 sets and evict each other.
#pragma once

#include <ATen/ATen.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <array>
#include <cstdint>

namespace lstm1997 {

// One factor pair of small_gemm_grouped: A (rows, depth) with row stride `stride`, times B (depth,
// V N) given as pack_grouped_panels(B, V).
template <typename scalar_t>
struct GroupedOperand {
  const scalar_t* rows;
  int64_t stride;
  const scalar_t* panels;
  int64_t depth;
};

namespace small_gemm {

// Rows of C per tile: with V vectors of columns, kRows * V accumulators, V weight vectors and a
// broadcast stay in registers (AVX-512 has 32: 6 x 4 + 4 + 1; AVX2 16: 6 x 2 + 2 + 1).
constexpr int kRows = 6;
// The reduction runs in chunks of k, so that a column tile's chunk of panels (16 KiB for float
// with AVX-512) stays in L1 while every row tile uses it; C holds the partial sums in between,
// which keeps each element's chain of multiply-adds in k order.
constexpr int64_t kChunk = 64;

template <typename scalar_t>
constexpr int vectors_per_tile() {
  return sizeof(at::vec::Vectorized<scalar_t>) >= 64 ? 4 : 2;
}

// C[0:R, 0:V*L] += A[0:R, 0:depth] @ (V panels' rows 0:depth); `count` valid columns in the last
// vector (the panels are zero-padded, so only the stores need it).
template <typename scalar_t, int R, int V, bool kPartial>
inline void tile(const scalar_t* A, int64_t lda, const scalar_t* panels, int64_t panel_stride,
                 scalar_t* C, int64_t ldc, int64_t depth, int64_t count) {
  using Vec = at::vec::Vectorized<scalar_t>;
  constexpr int64_t L = Vec::size();
  Vec acc[R][V];
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < V; ++v) {
      acc[r][v] = kPartial && v == V - 1 ? Vec::loadu(C + r * ldc + v * L, count)
                                         : Vec::loadu(C + r * ldc + v * L);
    }
  }
  for (int64_t k = 0; k < depth; ++k) {
    Vec w[V];
    for (int v = 0; v < V; ++v) {
      w[v] = Vec::loadu(panels + v * panel_stride + k * L);
    }
    for (int r = 0; r < R; ++r) {
      const Vec a(A[r * lda + k]);
      for (int v = 0; v < V; ++v) {
        acc[r][v] = at::vec::fmadd(a, w[v], acc[r][v]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < V; ++v) {
      if (kPartial && v == V - 1) {
        acc[r][v].store(C + r * ldc + v * L, count);
      } else {
        acc[r][v].store(C + r * ldc + v * L);
      }
    }
  }
}

template <typename scalar_t, int V, bool kPartial>
inline void column_tile(const scalar_t* A, int64_t lda, const scalar_t* panels,
                        int64_t panel_stride, scalar_t* C, int64_t ldc, int64_t rows,
                        int64_t depth, int64_t count) {
  // Row tiles inner: the tile's chunk of panels stays in L1 across them.
  int64_t r = 0;
  for (; r + kRows <= rows; r += kRows) {
    tile<scalar_t, kRows, V, kPartial>(A + r * lda, lda, panels, panel_stride, C + r * ldc, ldc,
                                       depth, count);
  }
  const scalar_t* A_r = A + r * lda;
  scalar_t* C_r = C + r * ldc;
  switch (rows - r) {
    case 5: tile<scalar_t, 5, V, kPartial>(A_r, lda, panels, panel_stride, C_r, ldc, depth, count); break;
    case 4: tile<scalar_t, 4, V, kPartial>(A_r, lda, panels, panel_stride, C_r, ldc, depth, count); break;
    case 3: tile<scalar_t, 3, V, kPartial>(A_r, lda, panels, panel_stride, C_r, ldc, depth, count); break;
    case 2: tile<scalar_t, 2, V, kPartial>(A_r, lda, panels, panel_stride, C_r, ldc, depth, count); break;
    case 1: tile<scalar_t, 1, V, kPartial>(A_r, lda, panels, panel_stride, C_r, ldc, depth, count); break;
    default: break;
  }
}

// Rows per tile of small_gemm_grouped: R * V accumulators, V weight vectors and a broadcast fit
// in the vector registers (AVX-512 has 32: 8 x 3 + 3 + 1 = 28 for the three gates; AVX2 16:
// 4 x 3 + 3 + 1 = 16).
template <typename scalar_t, int V>
constexpr int grouped_rows() {
  constexpr int registers = sizeof(at::vec::Vectorized<scalar_t>) >= 64 ? 32 : 16;
  return registers / (V + 1);
}

// One tile of small_gemm_grouped: R rows (from `row` on), panel p of every operand.
template <typename scalar_t, int R, int V, size_t S, typename Init, typename Finish>
inline void grouped_tile(const std::array<GroupedOperand<scalar_t>, S>& operands, int64_t row,
                         int64_t p, const Init& init, const Finish& finish) {
  using Vec = at::vec::Vectorized<scalar_t>;
  constexpr int64_t L = Vec::size();
  Vec acc[R][V];
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < V; ++v) {
      acc[r][v] = init(row + r, p, v);
    }
  }
  for (const GroupedOperand<scalar_t>& operand : operands) {
    const scalar_t* A = operand.rows + row * operand.stride;
    const scalar_t* panel = operand.panels + p * operand.depth * V * L;
    for (int64_t k = 0; k < operand.depth; ++k) {
      Vec w[V];
      for (int v = 0; v < V; ++v) {
        w[v] = Vec::loadu(panel + (k * V + v) * L);
      }
      for (int r = 0; r < R; ++r) {
        const Vec a(A[r * operand.stride + k]);
        for (int v = 0; v < V; ++v) {
          acc[r][v] = at::vec::fmadd(a, w[v], acc[r][v]);
        }
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    finish(row + r, p, acc[r]);
  }
}

template <typename scalar_t, int V, int R, size_t S, typename Init, typename Finish>
inline void grouped_row_tail(const std::array<GroupedOperand<scalar_t>, S>& operands, int64_t row,
                             int64_t p, int64_t count, const Init& init, const Finish& finish) {
  if constexpr (R > 0) {
    if (count == R) {
      grouped_tile<scalar_t, R, V>(operands, row, p, init, finish);
    } else {
      grouped_row_tail<scalar_t, V, R - 1>(operands, row, p, count, init, finish);
    }
  }
}

}  // namespace small_gemm

// B (K, V N), V groups of N columns, as panels for small_gemm_grouped: (ceil(N / L), K, V, L).
// Panel p holds, for every k, columns [p L, p L + L) of each group in turn (zero past column N),
// so one stream of loads brings a tile the same columns of all V groups: for the gates, the three
// net inputs of the same L cells.
//
// Written as one loop over B in the order it lies in memory, not as ATen's pad, permute and
// contiguous: those copy elementwise through strided iterators, a fixed cost per call larger than
// a step's arithmetic, which calls of one step (LSTMCell, online learning) pay in full
// (benchmarks/bench.py --online).
template <typename scalar_t>
at::Tensor pack_grouped_panels(const at::Tensor& b, int64_t groups) {
  constexpr int64_t L = at::vec::Vectorized<scalar_t>::size();
  const int64_t K = b.size(0), N = b.size(1) / groups, P = (N + L - 1) / L;
  // Weights arrive as W^T (column-major B, the usual case) or as rows of B (a slice of W_hh's
  // columns); anything else is copied to rows first.
  const bool column_major = b.stride(0) == 1 && K > 1;
  const bool row_major = !column_major && (b.stride(1) == 1 || b.size(1) <= 1);
  const at::Tensor source = column_major || row_major ? b : b.contiguous();
  const scalar_t* in = source.const_data_ptr<scalar_t>();
  const int64_t row_stride = source.stride(0), column_stride = source.stride(1);
  at::Tensor packed = N % L == 0 ? at::empty({P, K, groups, L}, b.options())
                                 : at::zeros({P, K, groups, L}, b.options());
  scalar_t* out = packed.data_ptr<scalar_t>();
  const int64_t k_stride = groups * L, panel_stride = K * k_stride;
  if (column_major) {
    // Each column of B (a row of W) is contiguous: a panel's L columns are read side by side, and
    // each k's L values written together.
    for (int64_t p = 0; p < P; ++p) {
      const int64_t count = std::min(L, N - p * L);
      for (int64_t g = 0; g < groups; ++g) {
        const scalar_t* columns = in + (g * N + p * L) * column_stride;
        scalar_t* target = out + p * panel_stride + g * L;
        for (int64_t k = 0; k < K; ++k) {
          for (int64_t l = 0; l < count; ++l) {
            target[k * k_stride + l] = columns[l * column_stride + k];
          }
        }
      }
    }
  } else {
    for (int64_t k = 0; k < K; ++k) {
      for (int64_t g = 0; g < groups; ++g) {
        const scalar_t* row = in + k * row_stride + g * N;
        for (int64_t p = 0; p < P; ++p) {
          const int64_t count = std::min(L, N - p * L);
          std::copy(row + p * L, row + p * L + count,
                    out + p * panel_stride + k * k_stride + g * L);
        }
      }
    }
  }
  return packed;
}

// B (K, N) as column panels for small_gemm_accumulate: (ceil(N / L), K, L), panel p holding
// columns [p L, p L + L) of every row, zero past column N. L is the SIMD width of scalar_t.
template <typename scalar_t>
at::Tensor pack_panels(const at::Tensor& b) {
  const at::Tensor packed = pack_grouped_panels<scalar_t>(b, 1);
  return packed.view({packed.size(0), packed.size(1), packed.size(3)});
}

// C[r, c] += sum_k A[r, k] * B[k, c] for rows r < `rows` and columns c in [c_begin, c_end), with B
// given as pack_panels(B) and c_begin a multiple of the SIMD width. A is (rows, K) with row
// stride lda, C has row stride ldc. Every element of C is one chain of multiply-adds in k
// order, whatever tile it falls in: the result does not depend on how the columns are split
// between threads.
template <typename scalar_t>
void small_gemm_accumulate(const scalar_t* A, int64_t lda, const scalar_t* panels, int64_t K,
                           scalar_t* C, int64_t ldc, int64_t rows, int64_t c_begin,
                           int64_t c_end) {
  using Vec = at::vec::Vectorized<scalar_t>;
  constexpr int64_t L = Vec::size();
  constexpr int V = small_gemm::vectors_per_tile<scalar_t>();
  const int64_t panel_stride = K * L;
  for (int64_t k = 0; k < K; k += small_gemm::kChunk) {
    const int64_t depth = std::min(small_gemm::kChunk, K - k);
    const scalar_t* A_k = A + k;
    const scalar_t* panels_k = panels + k * L;
    int64_t c = c_begin;
    for (; c + V * L <= c_end; c += V * L) {
      small_gemm::column_tile<scalar_t, V, false>(A_k, lda, panels_k + c / L * panel_stride,
                                                  panel_stride, C + c, ldc, rows, depth, L);
    }
    for (; c + L <= c_end; c += L) {
      small_gemm::column_tile<scalar_t, 1, false>(A_k, lda, panels_k + c / L * panel_stride,
                                                  panel_stride, C + c, ldc, rows, depth, L);
    }
    if (c < c_end) {
      small_gemm::column_tile<scalar_t, 1, true>(A_k, lda, panels_k + c / L * panel_stride,
                                                 panel_stride, C + c, ldc, rows, depth,
                                                 c_end - c);
    }
  }
}


// For rows [0, rows) and panels p in [p_begin, p_end): acc[v] = init(row, p, v) + the sum over
// the operands of A[row, :] @ (group v's columns of panel p), handed to finish(row, p, acc) while
// still in registers, so that the caller's epilogue never round-trips the product through memory.
// Each element is one chain of multiply-adds (fused where the build has FMA) after init, operand
// by operand in k order: its result does not depend on which tile it falls in or how rows or
// panels are split.
template <typename scalar_t, int V, size_t S, typename Init, typename Finish>
void small_gemm_grouped(const std::array<GroupedOperand<scalar_t>, S>& operands, int64_t rows,
                        int64_t p_begin, int64_t p_end, const Init& init, const Finish& finish) {
  constexpr int R = small_gemm::grouped_rows<scalar_t, V>();
  // Panels outer: a thread reads each weight panel once per call and uses it for all its row
  // tiles (from L1 and L2) before the next one. The panels of a layer can exceed L2 (1.2 MB for
  // W_ih and W_hh at I = 128, H = 256); with row tiles outer they would stream from L3 once per
  // row tile. (Both orders time the same in benchmarks/bench.py where L2 holds the panels; this
  // one needs less of the shared cache.)
  for (int64_t p = p_begin; p < p_end; ++p) {
    for (int64_t row = 0; row < rows; row += R) {
      const int64_t count = std::min<int64_t>(R, rows - row);
      if (count == R) {
        small_gemm::grouped_tile<scalar_t, R, V>(operands, row, p, init, finish);
      } else {
        small_gemm::grouped_row_tail<scalar_t, V, R - 1>(operands, row, p, count, init, finish);
      }
    }
  }
}

}  // namespace lstm1997
