#include "matmul.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/ops/addmm_cpu_dispatch.h>
#include <ATen/ops/mm_cpu_dispatch.h>

#include <algorithm>

namespace lstm1997 {
namespace {

// A tile holds at least this many multiply-adds, so that a tile's BLAS call stays efficient, and
// spans at least kMinTileExtent rows or columns (a multiple of any SIMD width).
constexpr int64_t kTileWork = int64_t{1} << 20;
constexpr int64_t kMinTileExtent = 32;

// Straight to ATen's CPU kernels: no dispatcher round trip per step, and no dependence on the
// caller's thread-local dispatch state, which at::parallel_for's worker threads do not inherit.
void one_product(at::Tensor& out, const at::Tensor& a, const at::Tensor& b, bool accumulate,
                 const at::Tensor& bias) {
  if (bias.defined()) {
    at::cpu::addmm_out(out, bias, a, b);
  } else if (accumulate) {
    at::cpu::addmm_(out, a, b);
  } else {
    at::cpu::mm_out(out, a, b);
  }
}

}  // namespace

void matmul_into(at::Tensor& out, const at::Tensor& a, const at::Tensor& b, bool accumulate,
                 const at::Tensor& bias) {
  const int64_t rows = out.size(0), cols = out.size(1), inner = a.size(1);
  if (!at::globalContext().deterministicAlgorithms() || rows == 0 || cols == 0) {
    one_product(out, a, b, accumulate, bias);
    return;
  }
  // Cut the longer side of the output; every element is still one full dot product over `inner`.
  const bool by_rows = rows >= cols;
  const int64_t extent = by_rows ? rows : cols;
  const int64_t wanted_tiles = std::max<int64_t>(1, rows * cols * std::max<int64_t>(inner, 1) / kTileWork);
  int64_t tile = std::max(kMinTileExtent, (extent + wanted_tiles - 1) / wanted_tiles);
  tile = (tile + kMinTileExtent - 1) / kMinTileExtent * kMinTileExtent;
  const int64_t tiles = (extent + tile - 1) / tile;
  // At least two tasks, so that at::parallel_for opens a parallel region whenever it has threads
  // (BLAS then stays single-threaded even for a single tile); spare tasks do nothing.
  at::parallel_for(0, std::max<int64_t>(tiles, 2), 1, [&](int64_t begin, int64_t end) {
    for (int64_t index = begin; index < std::min(end, tiles); ++index) {
      const int64_t first = index * tile, count = std::min(tile, extent - first);
      at::Tensor out_tile = out.narrow(by_rows ? 0 : 1, first, count);
      const at::Tensor a_tile = by_rows ? a.narrow(0, first, count) : a;
      const at::Tensor b_tile = by_rows ? b : b.narrow(1, first, count);
      const at::Tensor bias_tile =
          bias.defined() && !by_rows ? bias.narrow(0, first, count) : bias;
      one_product(out_tile, a_tile, b_tile, accumulate, bias_tile);
    }
  });
}

}  // namespace lstm1997
