// A matrix product for the recurrent step of small layers, run by the calling thread alone.
//
// At B = 16, H = 128 a step's product is 0.8M multiply-adds: a few microseconds of arithmetic,
// while a call into a GEMM library (and the parallel region it opens) costs about as much again.
// The fused small-layer loop (lstm_cpu.cpp) instead gives each thread a slice of the columns and
// calls this kernel inside one long-lived parallel region.
#pragma once

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cstdint>

namespace lstm1997 {
namespace small_gemm {

// Rows of C per tile: with kVectors vectors of columns, kRows * kVectors accumulators plus
// kVectors weight vectors stay in registers (AVX-512 has 32, AVX2 16).
constexpr int kRows = 4;

template <typename scalar_t>
constexpr int vectors_per_tile() {
  return sizeof(at::vec::Vectorized<scalar_t>) >= 64 ? 4 : 2;
}

// C[0:R, c:c + V*L] += A[0:R, :] @ B[:, c:c + V*L], `count` valid columns in the last vector.
template <typename scalar_t, int R, int V, bool kPartial>
inline void tile(const scalar_t* A, int64_t lda, const scalar_t* B, int64_t ldb, scalar_t* C,
                 int64_t ldc, int64_t K, int64_t count) {
  using Vec = at::vec::Vectorized<scalar_t>;
  constexpr int64_t L = Vec::size();
  const auto load = [&](const scalar_t* p, int v) {
    return kPartial && v == V - 1 ? Vec::loadu(p + v * L, count) : Vec::loadu(p + v * L);
  };
  Vec acc[R][V];
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < V; ++v) {
      acc[r][v] = load(C + r * ldc, v);
    }
  }
  for (int64_t k = 0; k < K; ++k) {
    Vec w[V];
    for (int v = 0; v < V; ++v) {
      w[v] = load(B + k * ldb, v);
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
inline void column_tile(const scalar_t* A, int64_t lda, const scalar_t* B, int64_t ldb,
                        scalar_t* C, int64_t ldc, int64_t rows, int64_t K, int64_t count) {
  // Row tiles inner: the tile's columns of B (K x V vectors) stay in L1 across them.
  int64_t r = 0;
  for (; r + kRows <= rows; r += kRows) {
    tile<scalar_t, kRows, V, kPartial>(A + r * lda, lda, B, ldb, C + r * ldc, ldc, K, count);
  }
  switch (rows - r) {
    case 3: tile<scalar_t, 3, V, kPartial>(A + r * lda, lda, B, ldb, C + r * ldc, ldc, K, count); break;
    case 2: tile<scalar_t, 2, V, kPartial>(A + r * lda, lda, B, ldb, C + r * ldc, ldc, K, count); break;
    case 1: tile<scalar_t, 1, V, kPartial>(A + r * lda, lda, B, ldb, C + r * ldc, ldc, K, count); break;
    default: break;
  }
}

}  // namespace small_gemm

// C[r, c] += sum_k A[r, k] * B[k, c] for rows r < `rows` and columns c in [c_begin, c_end). A is
// (rows, K) with row stride lda, B (K, N) with row stride ldb, C with row stride ldc. Every
// element of C is one chain of fused multiply-adds in k order, whatever the tile it falls in: the
// result does not depend on how the columns are split between threads.
template <typename scalar_t>
void small_gemm_accumulate(const scalar_t* A, int64_t lda, const scalar_t* B, int64_t ldb,
                           scalar_t* C, int64_t ldc, int64_t rows, int64_t K, int64_t c_begin,
                           int64_t c_end) {
  using Vec = at::vec::Vectorized<scalar_t>;
  constexpr int64_t L = Vec::size();
  constexpr int V = small_gemm::vectors_per_tile<scalar_t>();
  // The reduction runs in chunks of k, so that a column tile's chunk of B (kChunk x V vectors,
  // 16 KiB for float with AVX-512) stays in L1 while every row tile uses it; C holds the partial
  // sums in between, which keeps each element's chain of multiply-adds in k order.
  constexpr int64_t kChunk = 64;
  for (int64_t k = 0; k < K; k += kChunk) {
    const int64_t depth = std::min(kChunk, K - k);
    const scalar_t* A_k = A + k;
    const scalar_t* B_k = B + k * ldb;
    int64_t c = c_begin;
    for (; c + V * L <= c_end; c += V * L) {
      small_gemm::column_tile<scalar_t, V, false>(A_k, lda, B_k + c, ldb, C + c, ldc, rows, depth, L);
    }
    for (; c + L <= c_end; c += L) {
      small_gemm::column_tile<scalar_t, 1, false>(A_k, lda, B_k + c, ldb, C + c, ldc, rows, depth, L);
    }
    if (c < c_end) {
      small_gemm::column_tile<scalar_t, 1, true>(A_k, lda, B_k + c, ldb, C + c, ldc, rows, depth,
                                                 c_end - c);
    }
  }
}

}  // namespace lstm1997
