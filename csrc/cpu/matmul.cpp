#include "matmul.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/ops/addmm_cpu_dispatch.h>
#include <ATen/ops/mm_cpu_dispatch.h>

#include <ATen/core/dispatch/Dispatcher.h>

#include <algorithm>
#include <cstdlib>
#include <initializer_list>
#include <optional>
#include <string>

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

// out = a @ b, out += a @ b (accumulate), or out = bias + a @ b (bias broadcast over rows), by
// BLAS: one call, or fixed tiles of single-threaded calls under deterministic algorithms.
void matmul_into(at::Tensor& out, const at::Tensor& a, const at::Tensor& b, bool accumulate,
                 const at::Tensor& bias = at::Tensor()) {
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

// ---- oneDNN through PyTorch's mkldnn ops ----

// Fewer multiply-adds than this and BLAS wins: oneDNN's call (through the dispatcher and ideep)
// costs ~10 us more (tests/test_gemm_backends.py runs both sides of the threshold;
// benchmarks/bench.py times both libraries).
constexpr int64_t kOneDnnMinWork = int64_t{1} << 21;
// Below this many multiply-adds per step the fused small-layer loop beats a library call per step;
// above it (e.g. 256 x 1024 x 3072) the library's blocking wins. LSTM1997_SMALL_LAYER=0|1 and
// benchmarks/bench.py compare the two at any shape.
constexpr int64_t kSmallLayerMaxWork = int64_t{1} << 25;

// Weight gradients summed over fewer rows than this go to oneDNN as a^T b, more as (b^T a)^T
// and a copy (transposed_product): at M = 768, K = 128 and 256, a^T b took 0.3-0.7 times as long
// up to 160 rows and 0.97-3.7 times from 256 (benchmarks/README.md, "Issue #20, tenth session").
constexpr int64_t kShortReductionRows = 192;

// Reordering a weight costs about as much as a product of ~50 rows with it.
constexpr int64_t kMinRowsToPack = 128;

struct OneDnnOps {
  c10::OperatorHandle linear;         // mkldnn::_linear_pointwise: X @ W^T + B
  c10::OperatorHandle linear_add;     // mkldnn::_linear_pointwise.binary: X @ W^T + other
  c10::OperatorHandle reorder;        // mkldnn::_reorder_linear_weight: W in oneDNN's layout
};

// PyTorch's oneDNN ops, looked up once; none in a torch built without oneDNN.
const OneDnnOps* onednn_ops() {
  static const std::optional<OneDnnOps> ops = []() -> std::optional<OneDnnOps> {
    if (!at::hasMKLDNN()) {
      return std::nullopt;
    }
    auto& dispatcher = c10::Dispatcher::singleton();
    // These ops are PyTorch's own (torch.compile's CPU backend calls them), not a stable API:
    // each is taken only with the argument names it is called with here, else BLAS runs.
    const auto find = [&](const char* name, const char* overload,
                          std::initializer_list<const char*> arguments)
        -> std::optional<c10::OperatorHandle> {
      auto op = dispatcher.findSchema({name, overload});
      if (!op || !op->hasSchema() || op->schema().arguments().size() != arguments.size()) {
        return std::nullopt;
      }
      size_t index = 0;
      for (const char* argument : arguments) {
        if (op->schema().arguments()[index++].name() != argument) {
          return std::nullopt;
        }
      }
      return op;
    };
    auto linear =
        find("mkldnn::_linear_pointwise", "", {"X", "W", "B", "attr", "scalars", "algorithm"});
    auto linear_add = find("mkldnn::_linear_pointwise", "binary", {"X", "other", "W", "B", "attr"});
    auto reorder = find("mkldnn::_reorder_linear_weight", "", {"self", "batch_size"});
    if (!linear || !linear_add || !reorder) {
      return std::nullopt;
    }
    return OneDnnOps{*linear, *linear_add, *reorder};
  }();
  return ops ? &*ops : nullptr;
}

// Whether a product of `work` multiply-adds on `like`'s dtype goes to oneDNN.
const OneDnnOps* onednn_for(const at::Tensor& like, int64_t work) {
  if (like.scalar_type() != at::kFloat || like.device().type() != at::kCPU ||
      at::globalContext().deterministicAlgorithms()) {
    return nullptr;
  }
  const Switch mode = read_switch("LSTM1997_ONEDNN");
  if (mode == Switch::kOff || (mode == Switch::kAuto && work < kOneDnnMinWork)) {
    return nullptr;
  }
  return onednn_ops();
}

at::Tensor call(const c10::OperatorHandle& op, c10::Stack stack) {
  op.callBoxed(stack);
  return std::move(stack[0]).toTensor();
}

// X @ W^T (+ bias), X and W 2-D with unit stride in one dimension.
at::Tensor onednn_linear(const OneDnnOps& ops, const at::Tensor& rows, const at::Tensor& weight,
                         const at::Tensor& bias) {
  return call(ops.linear, {rows, weight, bias.defined() ? c10::IValue(bias) : c10::IValue(),
                           std::string("none"), c10::List<std::optional<at::Scalar>>(),
                           c10::IValue()});
}

at::Tensor onednn_linear_add(const OneDnnOps& ops, const at::Tensor& rows,
                             const at::Tensor& other, const at::Tensor& weight) {
  return call(ops.linear_add, {rows, other, weight, c10::IValue(), std::string("add")});
}

// Empty products never go to oneDNN: ATen's call handles them (and a zero-row weight packing).
bool empty_product(int64_t rows, int64_t cols, int64_t inner) {
  return rows == 0 || cols == 0 || inner == 0;
}

}  // namespace

Switch read_switch(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || value[0] == '\0') {
    return Switch::kAuto;
  }
  return value[0] == '0' ? Switch::kOff : Switch::kForce;
}

bool use_small_layer_loop(const at::Tensor& like, int64_t rows, int64_t out_features,
                          int64_t in_features) {
  if (like.scalar_type() != at::kFloat && like.scalar_type() != at::kDouble) {
    return false;
  }
  const Switch mode = read_switch("LSTM1997_SMALL_LAYER");
  return mode == Switch::kForce ||
         (mode == Switch::kAuto && rows * out_features * in_features < kSmallLayerMaxWork);
}

at::Tensor linear_product(const at::Tensor& rows, const at::Tensor& weight,
                          const at::Tensor& bias) {
  const int64_t n = rows.size(0), out_features = weight.size(0), inner = rows.size(1);
  if (!empty_product(n, out_features, inner)) {
    if (const OneDnnOps* ops = onednn_for(rows, n * out_features * inner)) {
      return onednn_linear(*ops, rows, weight, bias);
    }
  }
  at::Tensor out = at::empty({n, out_features}, rows.options());
  matmul_into(out, rows, weight.t(), /*accumulate=*/false, bias);
  return out;
}

at::Tensor transposed_product(const at::Tensor& a, const at::Tensor& b) {
  const int64_t n = a.size(0), m = a.size(1), k = b.size(1);
  if (!empty_product(m, k, n)) {
    if (const OneDnnOps* ops = onednn_for(a, n * m * k)) {
      // Long reductions as (b^T a)^T: oneDNN runs them fastest with both operands' N contiguous
      // (about twice as fast as a^T b at the weight gradients' shapes, T = 1000), and the
      // caller's copy of the result to (M, K) costs little beside them. Short ones (a few steps:
      // a chunk of an online stream, one step, h0's rows) as a^T b, which is then faster and
      // gives (M, K) at once. b is the weight operand there, which oneDNN takes with its strides
      // (a stride-0 h0 expanded over the batch rounded differently): dense, a copy of few rows.
      if (n < kShortReductionRows) {
        return onednn_linear(*ops, a.t(), b.contiguous().t(), at::Tensor());
      }
      return onednn_linear(*ops, b.t(), a.t(), at::Tensor()).t();
    }
  }
  at::Tensor out = at::empty({m, k}, a.options());
  matmul_into(out, a.t(), b, /*accumulate=*/false);
  return out;
}

RepeatedProduct::RepeatedProduct(const at::Tensor& weight, int64_t rows_per_call,
                                 int64_t total_rows)
    : weight_t_(weight.t()) {
  const int64_t out_features = weight.size(0), in_features = weight.size(1);
  if (empty_product(rows_per_call, out_features, in_features)) {
    return;
  }
  if (const OneDnnOps* ops = onednn_for(weight, rows_per_call * out_features * in_features)) {
    const at::Tensor plain = weight.contiguous();
    onednn_weight_ =
        total_rows >= kMinRowsToPack ? call(ops->reorder, {plain, rows_per_call}) : plain;
  }
}

at::Tensor RepeatedProduct::add(at::Tensor& sum, const at::Tensor& rows) const {
  if (onednn_weight_.defined() && rows.size(0) > 0) {
    return onednn_linear_add(*onednn_ops(), rows, sum, onednn_weight_);
  }
  matmul_into(sum, rows, weight_t_, /*accumulate=*/true);
  return sum;
}

at::Tensor RepeatedProduct::compute(at::Tensor& out, const at::Tensor& rows,
                                    const at::Tensor& bias) const {
  if (onednn_weight_.defined() && rows.size(0) > 0) {
    return onednn_linear(*onednn_ops(), rows, onednn_weight_, bias);
  }
  matmul_into(out, rows, weight_t_, /*accumulate=*/false, bias);
  return out;
}

}  // namespace lstm1997
