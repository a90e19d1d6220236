// The matrix products of the CPU kernels, and the choice of the library that runs each of them.
//
// Two libraries: ATen's BLAS call (MKL in PyTorch's x86 builds, behind torch.mm) and oneDNN (behind
// torch.nn.LSTM's CPU kernel and torch.compile's CPU linear layers, reached through PyTorch's own
// mkldnn::_linear_pointwise op). For float32 at the shapes of an LSTM layer oneDNN can be up to
// twice as fast, because MKL does not use AVX-512 on every CPU that has it (benchmarks/bench.py
// prints the bare products through both libraries side by side).
// oneDNN is used for float32 products big enough that its fixed cost per call (~10 us) pays; every
// other product, and every product of a torch built without oneDNN, goes to BLAS.
// LSTM1997_ONEDNN=0 sends every product to BLAS, LSTM1997_ONEDNN=1 every float32 product to oneDNN
// (tests and benchmarks compare the two).
//
// A third way, for the recurrent product of small layers (float and double): the time loops of the
// forward and of exact BPTT run in one parallel region, each thread computing its share (batch
// rows, or cells) with a register-tiled kernel (small_gemm.h), with no library call per step. From
// 8 batch rows on, the forward's kernel also does the input product, step by step, so that layer's
// input projection does not come here at all.
// LSTM1997_SMALL_LAYER=0 or =1 turns it off or on for every layer it can run; unset, the size
// decides.
//
// One more switch: torch.use_deterministic_algorithms. A multi-threaded GEMM splits a product
// between threads by the thread count, which changes the order of the additions and so the last
// bits of the result. When deterministic algorithms are on, every library product goes to BLAS,
// cut into tiles of the output fixed by the shapes alone, each tile one single-threaded BLAS call
// (BLAS runs single-threaded inside an OpenMP parallel region), so the result no longer depends on
// the thread count. (The small-layer loop computes every value in an order fixed by the shapes
// alone: it stays.)
#pragma once

#include <ATen/ATen.h>

namespace lstm1997 {

// A path switch of the environment (LSTM1997_ONEDNN, LSTM1997_SMALL_LAYER, LSTM1997_TINY_LAYER):
// unset or empty is kAuto, "0" kOff, anything else kForce. Read at every use, so that a process
// can switch (tests run every path side by side).
enum class Switch { kOff, kAuto, kForce };
Switch read_switch(const char* name);

// Whether the forward of a layer with this recurrent product (rows x in_features times
// in_features x out_features per step) runs as one fused small-layer loop.
bool use_small_layer_loop(const at::Tensor& like, int64_t rows, int64_t out_features,
                          int64_t in_features);

// rows @ weight^T (+ bias), a new (rows, out_features) tensor: the input projection and the input
// gradient (weight is then a transposed view).
at::Tensor linear_product(const at::Tensor& rows, const at::Tensor& weight,
                          const at::Tensor& bias = at::Tensor());

// a^T @ b for a (N, M) and b (N, K), summed over the N rows: the weight gradients. May return a
// transposed view.
at::Tensor transposed_product(const at::Tensor& a, const at::Tensor& b);

// Products with one weight, called many times: at every time step, or once per chunk of steps.
// With oneDNN the weight is reordered once into oneDNN's blocked layout for all the calls (oneDNN
// is also much less erratic with it: with a plain weight its time varies twofold with the rows).
class RepeatedProduct {
 public:
  // `weight` is (out_features, in_features); `rows_per_call` the most rows a call has;
  // `total_rows` the rows of all calls together (packing the weight pays only over enough).
  RepeatedProduct(const at::Tensor& weight, int64_t rows_per_call, int64_t total_rows);

  // sum + rows @ weight^T, written into `sum` in place or returned as a new tensor: the result.
  at::Tensor add(at::Tensor& sum, const at::Tensor& rows) const;
  // rows @ weight^T (+ bias), written into `out` or returned as a new tensor: the result.
  at::Tensor compute(at::Tensor& out, const at::Tensor& rows,
                     const at::Tensor& bias = at::Tensor()) const;

 private:
  at::Tensor weight_t_;       // (in, out) view for BLAS
  at::Tensor onednn_weight_;  // oneDNN's copy (packed or plain); undefined when BLAS runs
};

}  // namespace lstm1997
