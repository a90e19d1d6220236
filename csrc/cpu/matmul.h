// The matrix products of the CPU kernels, with one switch: torch.use_deterministic_algorithms.
//
// A multi-threaded BLAS (MKL in PyTorch's x86 builds) splits a product between threads by the
// thread count, which changes the order of the additions and so the last bits of the result:
// the same inputs give different outputs under torch.set_num_threads(1) and (4). When
// deterministic algorithms are on, every product is cut into tiles of the output fixed by the
// shapes alone, and each tile is one single-threaded BLAS call (BLAS runs single-threaded inside
// an OpenMP parallel region), so the result no longer depends on the thread count. Otherwise the
// product is one BLAS call, which is faster.
#pragma once

#include <ATen/ATen.h>

namespace lstm1997 {

// out = a @ b, out += a @ b (accumulate), or out = bias + a @ b (bias broadcast over rows).
void matmul_into(at::Tensor& out, const at::Tensor& a, const at::Tensor& b, bool accumulate,
                 const at::Tensor& bias = at::Tensor());

}  // namespace lstm1997
