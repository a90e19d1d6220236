// CPU kernels of the 1997 LSTM layer: forward, truncated backward and exact backward.
//
// The big matrix products (input projection, weight gradients, input gradient) run once over all
// rows outside the time loop. Inside it, the forward does one recurrent GEMM per step (small
// layers: a fused step kernel, which from 8 batch rows on also does the input product, see
// small_layer_steps); the truncated backward does none (a reverse scan over time), the exact
// backward one per step.
// Tensors are handled as 2-D (rows, features), where the rows of step t are given by StepRows, so
// dense and packed input share every loop. Pointwise math runs in at::opmath_type (float for
// float16 and bfloat16), and so do the carries through time: the cell state and its error.
#include "../lstm1997.h"
#include "matmul.h"
#include "small_gemm.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <limits>
#include <type_traits>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace lstm1997 {

// The cell's formulas on SIMD vectors (AVX-512 or AVX2 where the build enables it; see setup.py).
template <typename T>
struct ElementwiseMath<at::vec::Vectorized<T>> {
  using V = at::vec::Vectorized<T>;
  static V tanh(V x) { return x.tanh(); }
  static V exp(V x) { return x.exp(); }
  static V reciprocal(V x) { return V(1) / x; }
};

#if defined(CPU_CAPABILITY_AVX512)
// exp and 1/x for 16 floats, inline, to about 1 ulp (measured against float64: exp at most 0.93
// ulp, 1/x 0.53 ulp). Inline, a row's cells can interleave in the pipeline; Sleef's out-of-line exp and
// vector division keep them apart.
// exp: x = n ln2 + r, |r| <= ln2/2, with ln2 in two parts so that r is exact to float precision;
// exp(r) by its Taylor polynomial of degree 7 (truncation error below 5e-9 relative); 2^n by
// scalef, which gives inf, denormals and 0 where exp does. x is first clamped into [-104, 89]
// (exp is inf or 0 beyond), with the operand order that lets NaN through.
inline __m512 exp_avx512(__m512 x) {
  x = _mm512_min_ps(_mm512_set1_ps(89.0f), x);
  x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// 1/d from the 14-bit estimate and one Newton step (about 28 bits before rounding). rcp14 gives 0
// for inf and inf for 0, which the Newton step would turn into NaN: those lanes keep the estimate.
inline __m512 reciprocal_avx512(__m512 d) {
  const __m512 estimate = _mm512_rcp14_ps(d);
  const __m512 error = _mm512_fnmadd_ps(d, estimate, _mm512_set1_ps(1.0f));
  const __m512 refined = _mm512_fmadd_ps(estimate, error, estimate);
  const __mmask16 finite = _mm512_cmp_ps_mask(
      _mm512_abs_ps(estimate), _mm512_set1_ps(std::numeric_limits<float>::infinity()), _CMP_LT_OQ);
  const __mmask16 nonzero = _mm512_cmp_ps_mask(estimate, _mm512_setzero_ps(), _CMP_NEQ_UQ);
  return _mm512_mask_blend_ps(finite & nonzero, estimate, refined);
}
#endif

// float: tanh(x) = 2 / (1 + exp(-2x)) - 1, from the same accurate exp the sigmoids use; at about
// half the cost of a vector tanh, with an absolute error below 2e-7 (relative error grows only for
// |x| < 1e-3, where tanh is below 1e-3 itself). Saturates exactly: +-inf give +-1.
template <>
struct ElementwiseMath<at::vec::Vectorized<float>> {
  using V = at::vec::Vectorized<float>;
#if defined(CPU_CAPABILITY_AVX512)
  static V exp(V x) { return V(exp_avx512(x)); }
  static V reciprocal(V x) { return V(reciprocal_avx512(x)); }
#else
  static V exp(V x) { return x.exp(); }
  static V reciprocal(V x) { return V(1) / x; }
#endif
  static V tanh(V x) { return V(2) * reciprocal(V(1) + exp(V(-2) * x)) - V(1); }
};

namespace {

// A run of adjacent cells computed together: a whole SIMD vector, a partly filled vector (the
// last cells of a range), or one opmath value (half types, stored as something else than opmath).
// Float and double cells always go through the vector math, whatever vector they fall in, so that
// how at::parallel_for splits a range (it depends on the thread count) cannot change a result bit.
template <typename V, bool kPartial>
struct Lanes {
  using Value = V;
  int64_t count;  // the valid lanes of a partial vector
  template <typename T>
  V load(const T* data) const {
    if constexpr (std::is_arithmetic_v<V>) {
      return static_cast<V>(*data);
    } else if constexpr (kPartial) {
      return V::loadu(data, count);
    } else {
      return V::loadu(data);
    }
  }
  template <typename T>
  void store(const V& value, T* data) const {
    if constexpr (std::is_arithmetic_v<V>) {
      *data = static_cast<T>(value);
    } else if constexpr (kPartial) {
      value.store(data, count);
    } else {
      value.store(data);
    }
  }
};

// Runs body(j, lanes) over [begin, end) in Lanes: SIMD vectors of opmath_t when the stored type is
// opmath_t itself (float, double), otherwise one opmath_t value at a time.
template <typename scalar_t, typename Body>
inline void for_each_lane(int64_t begin, int64_t end, const Body& body) {
  using opmath_t = at::opmath_type<scalar_t>;
  int64_t j = begin;
  if constexpr (std::is_same_v<scalar_t, opmath_t>) {
    using Vec = at::vec::Vectorized<opmath_t>;
#pragma GCC unroll 4
    for (; j + Vec::size() <= end; j += Vec::size()) {
      body(j, Lanes<Vec, false>{Vec::size()});
    }
    if (j < end) {
      body(j, Lanes<Vec, true>{end - j});
    }
  } else {
    for (; j < end; ++j) {
      body(j, Lanes<opmath_t, false>{1});
    }
  }
}

// One step of one cell: the activated gates, the new cell state s_t, h(s_t), and the output h_t.
template <typename V>
struct CellStep {
  V input_gate, cell_input, output_gate, cell_state, squashed_state, hidden;
};

template <typename V, typename opmath_t>
inline CellStep<V> cell_forward(V a, V z, V c, V previous_state, Squash<opmath_t> g,
                                Squash<opmath_t> h) {
  const V i = sigmoid(a);
  const V gz = g(z);
  const V o = sigmoid(c);
  const V s = previous_state + i * gz;
  const V hs = h(s);
  return {i, gz, o, s, hs, o * hs};
}

// The error of one cell's three net inputs at one step, shared by both backward modes. `dh` is
// the error reaching h_t; `ds` enters as the error on s_t from step t+1 and leaves as the error on
// s_t (and so on s_{t-1}: the carousel passes it on unchanged).
template <typename V>
struct NetErrors {
  V input_gate, cell_input, output_gate;
};

template <typename V, typename opmath_t>
inline NetErrors<V> cell_backward(V dh, V& ds, V i, V gz, V o, V hs, Squash<opmath_t> g,
                                  Squash<opmath_t> h) {
  const V one(1);
  const V output_gate_error = dh * hs * o * (one - o);
  ds = ds + dh * o * h.grad_from_value(hs);
  return {ds * gz * i * (one - i), ds * i * g.grad_from_value(gz), output_gate_error};
}

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


// The cell step of up to L cells of one row (`lanes`), from their three net inputs. Stores s_t
// and h_t and, with `keep`, the activated gates (the three blocks of `gates`, H apart) and h(s_t)
// for the backward pass. The fused step kernel calls it on net inputs still in registers.
template <typename LanesT, typename V, typename scalar_t, typename opmath_t>
inline void finish_cells(const LanesT& lanes, const V* net, scalar_t* gates, opmath_t* state,
                         scalar_t* squashed_state, scalar_t* hidden, int64_t H, bool keep,
                         Squash<opmath_t> g, Squash<opmath_t> h) {
  const CellStep<V> step = cell_forward(net[kInputGate], net[kCellInput], net[kOutputGate],
                                        lanes.load(state), g, h);
  if (keep) {
    lanes.store(step.input_gate, gates + kInputGate * H);
    lanes.store(step.cell_input, gates + kCellInput * H);
    lanes.store(step.output_gate, gates + kOutputGate * H);
    lanes.store(step.squashed_state, squashed_state);
  }
  lanes.store(step.cell_state, state);
  lanes.store(step.hidden, hidden);
}

// One time step of cells [j_begin, j_end) of batch row b. `net` holds the net inputs; `gates`
// receives the activated gates (it may be `net` itself), so the backward pass reads them back
// without recomputing them. `state` is the running cell state, in opmath precision, updated in
// place; `squashed_state` receives h(s_t), which is what the backward pass needs of it.
template <typename scalar_t, typename opmath_t>
inline void step_cells(const scalar_t* net, scalar_t* gates, opmath_t* state,
                       scalar_t* squashed_state, scalar_t* hidden, int64_t b, int64_t j_begin,
                       int64_t j_end, int64_t H, Squash<opmath_t> g, Squash<opmath_t> h) {
  const scalar_t* row_net = net + b * kNumGateBlocks * H;
  scalar_t* row_gates = gates + b * kNumGateBlocks * H;
  const int64_t row = b * H;
  for_each_lane<scalar_t>(j_begin, j_end, [&](int64_t j, auto lanes) {
    using V = typename decltype(lanes)::Value;
    const V cell_net[kNumGateBlocks] = {lanes.load(row_net + kInputGate * H + j),
                                        lanes.load(row_net + kCellInput * H + j),
                                        lanes.load(row_net + kOutputGate * H + j)};
    finish_cells(lanes, cell_net, row_gates + j, state + row + j, squashed_state + row + j,
                 hidden + row + j, H, /*keep=*/true, g, h);
  });
}

// One time step of the cell over `rows` batch rows (see step_cells).
template <typename scalar_t, typename opmath_t>
void forward_step(const scalar_t* net, scalar_t* gates, opmath_t* state, scalar_t* squashed_state,
                  scalar_t* hidden, int64_t rows, int64_t hidden_size, Squash<opmath_t> g,
                  Squash<opmath_t> h) {
  const int64_t H = hidden_size;
  at::parallel_for(0, rows * H, kElementsPerTask, [&](int64_t begin, int64_t end) {
    for_each_row_piece(begin, end, H, [&](int64_t b, int64_t j_begin, int64_t j_end) {
      step_cells(net, gates, state, squashed_state, hidden, b, j_begin, j_end, H, g, h);
    });
  });
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

// The input side of a small layer's forward steps: either the input projections, already in the
// gate buffer, or (`folded`) the input rows themselves, multiplied inside the step kernel.
template <typename scalar_t>
struct StepInput {
  const scalar_t* input = nullptr;   // (rows, I), when folded
  const scalar_t* panels = nullptr;  // pack_grouped_panels(W_ih^T, 3), when folded
  const scalar_t* bias = nullptr;    // (3H) or null, when folded
  int64_t input_size = 0;
  bool folded() const { return input != nullptr; }
};

// Forward steps [t_begin, t_end) of a small layer (no memory cell blocks). For each tile of its
// share (small_gemm_grouped: a few rows by L cells), a thread computes the three gates' net inputs
// and runs the cell step on them in registers: the net inputs never go back to memory.
// `recurrent_panels` is pack_grouped_panels(W_hh^T, 3). `gates` (rows of the steps, 3H), indexed
// from row `base`, receives with `keep` the activated gates (and `squashed_state` h(s_t)); unless
// the input product is folded in, it first holds the steps' input projections.
template <typename scalar_t, typename opmath_t>
void small_layer_steps(const StepRows& steps, int64_t t_begin, int64_t t_end, int64_t base,
                       const StepInput<scalar_t>& step_input, const scalar_t* recurrent_panels,
                       const scalar_t* initial_hidden, scalar_t* gates, opmath_t* state,
                       scalar_t* squashed_state, scalar_t* output, int64_t H, bool keep,
                       Squash<opmath_t> g, Squash<opmath_t> h) {
  static_assert(std::is_same_v<scalar_t, opmath_t>, "the small-layer loop is for float and double");
  using Vec = at::vec::Vectorized<scalar_t>;
  constexpr int64_t L = Vec::size();
  const int64_t G = kNumGateBlocks * H, I = step_input.input_size;
  for_grid_slices<scalar_t>(steps.batch, H, [&](const GridSlice& slice) {
    const int64_t p_begin = slice.j_begin / L, p_end = (slice.j_end + L - 1) / L;
    for (int64_t t = t_begin; t < t_end; ++t) {
      const int64_t first = steps.offset[t];
      // Active rows are a prefix of the batch: this thread's share of them.
      const int64_t b_end = std::min(slice.b_end, steps.count[t]), b_begin = slice.b_begin;
      // A thread may have no rows left at this step (packed input) or no cells: it only meets
      // the others at the barrier.
      if (p_begin < p_end && b_begin < b_end) {
        const scalar_t* previous = t == 0 ? initial_hidden : output + steps.offset[t - 1] * H;
        // Without `keep` a folded pass has no gate buffer at all (and writes none).
        scalar_t* step_gates = gates == nullptr ? nullptr : gates + ((first - base) + b_begin) * G;
        scalar_t* step_squashed =
            squashed_state == nullptr ? nullptr : squashed_state + ((first - base) + b_begin) * H;
        scalar_t* step_output = output + (first + b_begin) * H;
        opmath_t* step_state = state + b_begin * H;
        const GroupedOperand<scalar_t> recurrent{previous + b_begin * H, H, recurrent_panels, H};
        const auto finish = [&](int64_t r, int64_t p, const Vec* cell_net) {
          const int64_t j = p * L, count = std::min(L, H - j);
          const auto run = [&](auto lanes) {
            finish_cells(lanes, cell_net, keep ? step_gates + r * G + j : nullptr,
                         step_state + r * H + j, keep ? step_squashed + r * H + j : nullptr,
                         step_output + r * H + j, H, keep, g, h);
          };
          if (count == L) {
            run(Lanes<Vec, false>{L});
          } else {
            run(Lanes<Vec, true>{count});
          }
        };
        // Loads from the gate buffer or the bias, masked past cell H (where the next gate begins).
        const auto load = [&](const scalar_t* source, int64_t p) {
          const int64_t count = std::min(L, H - p * L);
          return count == L ? Vec::loadu(source) : Vec::loadu(source, count);
        };
        if (step_input.folded()) {
          const GroupedOperand<scalar_t> projection{
              step_input.input + (first + b_begin) * I, I, step_input.panels, I};
          const auto bias = [&](int64_t, int64_t p, int gate) {
            return step_input.bias == nullptr ? Vec(0)
                                              : load(step_input.bias + gate * H + p * L, p);
          };
          small_gemm_grouped<scalar_t, kNumGateBlocks>(
              std::array<GroupedOperand<scalar_t>, 2>{projection, recurrent}, b_end - b_begin,
              p_begin, p_end, bias, finish);
        } else {
          const auto projected = [&](int64_t r, int64_t p, int gate) {
            return load(step_gates + r * G + gate * H + p * L, p);
          };
          small_gemm_grouped<scalar_t, kNumGateBlocks>(
              std::array<GroupedOperand<scalar_t>, 1>{recurrent}, b_end - b_begin, p_begin, p_end,
              projected, finish);
        }
      }
      step_barrier(slice);  // the next step reads every cell's h_t
    }
  });
}

// The error of the net inputs of cells [j_begin, j_end) of one row at one step: reads the row's
// activated gates and h(s_t), writes dnet, updates the carried ds.
template <typename scalar_t, typename opmath_t>
inline void backward_row(const scalar_t* dh_external, const scalar_t* dh_extra, opmath_t* ds,
                         const scalar_t* gates, const scalar_t* squashed_state, scalar_t* dnet,
                         int64_t j_begin, int64_t j_end, int64_t H, Squash<opmath_t> g,
                         Squash<opmath_t> h) {
  for_each_lane<scalar_t>(j_begin, j_end, [&](int64_t j, auto lanes) {
    using V = typename decltype(lanes)::Value;
    V dh = lanes.load(dh_external + j);
    if (dh_extra != nullptr) {
      dh = dh + lanes.load(dh_extra + j);
    }
    V carried = lanes.load(ds + j);
    const NetErrors<V> errors = cell_backward(
        dh, carried, lanes.load(gates + kInputGate * H + j), lanes.load(gates + kCellInput * H + j),
        lanes.load(gates + kOutputGate * H + j), lanes.load(squashed_state + j), g, h);
    lanes.store(carried, ds + j);
    lanes.store(errors.input_gate, dnet + kInputGate * H + j);
    lanes.store(errors.cell_input, dnet + kCellInput * H + j);
    lanes.store(errors.output_gate, dnet + kOutputGate * H + j);
  });
}

// Row of each sequence's last step, where h_n and s_n are read.
at::Tensor last_rows(const StepRows& steps) {
  std::vector<int64_t> rows(steps.batch);
  for (int64_t t = 0; t < steps.steps(); ++t) {
    for (int64_t b = steps.active_after(t); b < steps.count[t]; ++b) {
      rows[b] = steps.offset[t] + b;
    }
  }
  return at::tensor(rows, at::kLong);
}

// Rows of the gate buffer that an inference pass projects at once: about 1 MiB of float32, so that
// a block's input projection is still in cache when its steps run.
constexpr int64_t kInferenceBlockElements = 1 << 18;

// The forward pass. With `keep_for_backward` the gate buffer and squashed_state hold every step,
// for the backward pass; without it (inference) they are scratch for one block of steps at a time:
// the input projection then runs block by block, and the pass needs no T*B*3H buffer. A small
// layer that folds the input product into its steps (fold_projection) has no projections to
// store: its inference pass has neither buffer.
ForwardResult run_forward(const at::Tensor& input, const at::Tensor& weight_ih,
                          const at::Tensor& weight_hh, const std::optional<at::Tensor>& bias_ih,
                          const std::optional<at::Tensor>& bias_hh,
                          const std::optional<at::Tensor>& h0,
                          const std::optional<at::Tensor>& s0, c10::string_view activation_name,
                          const std::optional<at::Tensor>& batch_sizes, int64_t cells_per_block,
                          bool keep_for_backward) {
  const LayerSizes sizes = check_forward_args(input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0,
                                              batch_sizes, cells_per_block);
  const Activation activation = parse_activation(activation_name);
  const StepRows steps = step_rows(sizes, batch_sizes);
  const int64_t T = steps.steps(), B = steps.batch, N = sizes.rows.expect_int(),
                I = sizes.input_size.expect_int(), H = sizes.hidden_size.expect_int(),
                G = sizes.gate_rows().expect_int();
  const auto options = input.options();
  const auto opmath_options = options.dtype(at::toOpMathType(input.scalar_type()));
  const bool blocked = cells_per_block > 1;

  const at::Tensor input_2d = input.reshape({N, I});
  at::Tensor bias;
  if (present(bias_ih) || present(bias_hh)) {
    bias = present(bias_ih) && present(bias_hh) ? *bias_ih + *bias_hh
           : present(bias_ih)                   ? *bias_ih
                                                : *bias_hh;
  }
  // Steps per block: all of them when the buffers are kept (one GEMM projects every step).
  const int64_t block_steps =
      keep_for_backward ? std::max<int64_t>(T, 1)
                        : std::max<int64_t>(1, kInferenceBlockElements / std::max<int64_t>(1, B * kNumGateBlocks * H));
  const int64_t buffer_rows = keep_for_backward ? N : std::min(N, block_steps * B);
  const bool small_layer = !blocked && use_small_layer_loop(input, B, G, H);
  // Whether the small-layer loop also does the input product, step by step, instead of one GEMM
  // beforehand: then no buffer of projections is written and read back. It pays once a step has
  // the rows of a whole register tile to share each weight load (with fewer, a step's product is
  // bound by loading W_ih; the tile height is the same for float and double vectors).
  const bool fold_projection =
      small_layer && B >= small_gemm::grouped_rows<float, kNumGateBlocks>();
  const RepeatedProduct projection(weight_ih, fold_projection ? 0 : buffer_rows, N);
  // The small-layer loop takes W_hh packed by itself; only the per-step path needs this product.
  const RepeatedProduct recurrent(weight_hh, small_layer ? 0 : B, N);
  // Unless the input product is folded in, the gate buffer receives the net inputs and, step by
  // step, the activated gates. Each block of steps gets its input projection as a new tensor, in G
  // columns (block rows); without memory cell blocks that tensor is the gate buffer itself, with
  // them its rows are spread to the per-cell layout of a separate gate buffer, step by step.
  at::Tensor gates =
      blocked || T == 0 ? at::empty({buffer_rows, kNumGateBlocks * H}, options) : at::Tensor();
  const at::Tensor expansion =
      blocked ? block_expansion_index(H, cells_per_block, options) : at::Tensor();
  at::Tensor squashed_state =
      fold_projection && !keep_for_backward ? at::Tensor() : at::empty({buffer_rows, H}, options);
  at::Tensor output = at::empty({N, H}, options);
  const at::Tensor initial_hidden = present(h0) ? h0->contiguous() : at::zeros({B, H}, options);
  // The carousel's running sum. Rows whose sequence has ended keep their last state: s_n.
  at::Tensor state = present(s0) ? s0->to(opmath_options, /*non_blocking=*/false, /*copy=*/true,
                                         at::MemoryFormat::Contiguous)
                                 : at::zeros({B, H}, opmath_options);

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(),
                                  "lstm1997_forward_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const auto g = cell_input_squash<opmath_t>(activation);
    const auto h = cell_output_squash<opmath_t>(activation);
    // For the small-layer loop: W_hh^T, the same cells of the three gate blocks side by side.
    const at::Tensor recurrent_panels =
        small_layer ? pack_grouped_panels<scalar_t>(weight_hh.t(), kNumGateBlocks) : at::Tensor();
    if constexpr (std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, double>) {
      if (fold_projection && T > 0) {
        const at::Tensor input_rows = input_2d.contiguous();
        const at::Tensor input_panels =
            pack_grouped_panels<scalar_t>(weight_ih.t(), kNumGateBlocks);
        const at::Tensor bias_rows = bias.defined() ? bias.contiguous() : at::Tensor();
        StepInput<scalar_t> step_input;
        step_input.input = input_rows.const_data_ptr<scalar_t>();
        step_input.panels = input_panels.const_data_ptr<scalar_t>();
        step_input.bias = bias_rows.defined() ? bias_rows.const_data_ptr<scalar_t>() : nullptr;
        step_input.input_size = I;
        if (keep_for_backward) {
          gates = at::empty({N, G}, options);
        }
        small_layer_steps<scalar_t, opmath_t>(
            steps, 0, T, 0, step_input, recurrent_panels.const_data_ptr<scalar_t>(),
            initial_hidden.const_data_ptr<scalar_t>(),
            keep_for_backward ? gates.data_ptr<scalar_t>() : nullptr, state.data_ptr<opmath_t>(),
            keep_for_backward ? squashed_state.data_ptr<scalar_t>() : nullptr,
            output.data_ptr<scalar_t>(), H, keep_for_backward, g, h);
        return;
      }
    }
    for (int64_t block = 0; block < T; block += block_steps) {
      const int64_t block_end = std::min(T, block + block_steps);
      const int64_t block_first = steps.offset[block];
      const int64_t block_rows = steps.offset[block_end - 1] + steps.count[block_end - 1] - block_first;
      // Row r of the sequence lives at row r - base of the buffers.
      const int64_t base = keep_for_backward ? 0 : block_first;
      at::Tensor block_net =
          blocked || !gates.defined() ? at::empty({block_rows, G}, options)
                                      : gates.narrow(0, 0, block_rows);
      block_net = projection.compute(block_net, input_2d.narrow(0, block_first, block_rows), bias);
      if (!blocked) {
        gates = block_net;
      }
      if constexpr (std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, double>) {
        if (small_layer) {
          small_layer_steps<scalar_t, opmath_t>(
              steps, block, block_end, block_first, StepInput<scalar_t>{},
              recurrent_panels.const_data_ptr<scalar_t>(),
              initial_hidden.const_data_ptr<scalar_t>(), block_net.data_ptr<scalar_t>(),
              state.data_ptr<opmath_t>(),
              squashed_state.data_ptr<scalar_t>() + (block_first - base) * H,
              output.data_ptr<scalar_t>(), H, keep_for_backward, g, h);
          continue;
        }
      }
      for (int64_t t = block; t < block_end; ++t) {
        const int64_t first = steps.offset[t], rows = steps.count[t];
        at::Tensor net = block_net.narrow(0, first - block_first, rows);
        // The rows active now are a prefix of those active at the previous step.
        const at::Tensor previous = t == 0 ? initial_hidden.narrow(0, 0, rows)
                                           : output.narrow(0, steps.offset[t - 1], rows);
        at::Tensor summed = recurrent.add(net, previous);
        at::Tensor cell_gates = gates.narrow(0, first - base, rows);
        if (blocked) {
          at::index_select_out(cell_gates, summed, 1, expansion);
          summed = cell_gates;
        }
        forward_step<scalar_t, opmath_t>(
            summed.const_data_ptr<scalar_t>(), cell_gates.data_ptr<scalar_t>(),
            state.data_ptr<opmath_t>(), squashed_state.data_ptr<scalar_t>() + (first - base) * H,
            output.data_ptr<scalar_t>() + first * H, rows, H, g, h);
      }
    }
  });
  // Fresh tensors, not views: an op's outputs must not alias each other.
  at::Tensor h_n = T == 0 ? initial_hidden.clone() : output.index_select(0, last_rows(steps));
  at::Tensor s_n = state.to(input.scalar_type(), /*non_blocking=*/false, /*copy=*/true);
  const auto per_step = [&](const at::Tensor& tensor) {
    return sizes.packed ? tensor : tensor.view({T, B, tensor.size(1)});
  };
  if (!keep_for_backward) {
    return {per_step(output), h_n, s_n, at::Tensor(), at::Tensor()};
  }
  return {per_step(output), h_n, s_n, per_step(squashed_state), per_step(gates)};
}

ForwardResult lstm_forward_cpu(const at::Tensor& input, const at::Tensor& weight_ih,
                               const at::Tensor& weight_hh,
                               const std::optional<at::Tensor>& bias_ih,
                               const std::optional<at::Tensor>& bias_hh,
                               const std::optional<at::Tensor>& h0,
                               const std::optional<at::Tensor>& s0,
                               c10::string_view activation,
                               const std::optional<at::Tensor>& batch_sizes,
                               int64_t cells_per_block) {
  return run_forward(input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0, activation,
                     batch_sizes, cells_per_block, /*keep_for_backward=*/true);
}

// lstm without autograd (inference): nothing kept for backward.
std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_cpu(
    const at::Tensor& input, const at::Tensor& weight_ih, const at::Tensor& weight_hh,
    const std::optional<at::Tensor>& bias_ih, const std::optional<at::Tensor>& bias_hh,
    const std::optional<at::Tensor>& h0, const std::optional<at::Tensor>& s0, bool /*truncate*/,
    c10::string_view activation, const std::optional<at::Tensor>& batch_sizes,
    int64_t cells_per_block) {
  auto [output, h_n, s_n, squashed_state, gates] =
      run_forward(input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0, activation, batch_sizes,
                  cells_per_block, /*keep_for_backward=*/false);
  return {output, h_n, s_n};
}

// The error of every net input, dnet (rows, 3H), and of s0, under the paper's truncation: dh_t is
// only the external error (no recurrent term), so ds is a reverse cumulative sum of local terms and
// every (b, j) cell runs through time independently of the others: no matrix product at all.
template <typename scalar_t>
void truncated_net_errors(const StepRows& steps, const at::Tensor& grad_output,
                          const at::Tensor& grad_h_n, const at::Tensor& squashed_state,
                          const at::Tensor& gates, at::Tensor& dnet, at::Tensor& ds_carry,
                          Activation activation) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t T = steps.steps(), B = steps.batch, H = grad_h_n.size(1);
  const auto g = cell_input_squash<opmath_t>(activation);
  const auto h = cell_output_squash<opmath_t>(activation);
  opmath_t* ds = ds_carry.data_ptr<opmath_t>();
  const scalar_t* dh_ext = grad_output.const_data_ptr<scalar_t>();
  const scalar_t* dh_last = grad_h_n.const_data_ptr<scalar_t>();
  const scalar_t* hs = squashed_state.const_data_ptr<scalar_t>();
  const scalar_t* gate = gates.const_data_ptr<scalar_t>();
  scalar_t* dnet_ptr = dnet.data_ptr<scalar_t>();
  const int64_t grain = std::max<int64_t>(1, kElementsPerTask / std::max<int64_t>(1, T));

  at::parallel_for(0, B * H, grain, [&](int64_t begin, int64_t end) {
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t active = steps.count[t], ending = steps.active_after(t);
      for_each_row_piece(begin, end, H, [&](int64_t b, int64_t j_begin, int64_t j_end) {
        if (b >= active) {
          return;  // this sequence has ended before step t
        }
        const int64_t row = steps.offset[t] + b;
        // h_n of a sequence is its output at its last step: that error joins there.
        const scalar_t* dh_extra = b >= ending ? dh_last + b * H : nullptr;
        backward_row(dh_ext + row * H, dh_extra, ds + b * H, gate + row * kNumGateBlocks * H,
                     hs + row * H, dnet_ptr + row * kNumGateBlocks * H, j_begin, j_end, H, g, h);
      });
    }
  });
}

// Exact BPTT: dh_t also receives dnet_{t+1} W_hh, one GEMM per step. `dh_carry` enters as
// grad_h_n and leaves as the error on h0; rows of sequences not yet started (in reverse time) keep
// their grad_h_n until their last step.
template <typename scalar_t>
void exact_net_errors(const StepRows& steps, const at::Tensor& grad_output,
                      const RepeatedProduct& recurrent, const at::Tensor& squashed_state,
                      const at::Tensor& gates, at::Tensor& dnet, at::Tensor& dh_carry,
                      at::Tensor& ds_carry, Activation activation) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t H = dh_carry.size(1);
  const auto g = cell_input_squash<opmath_t>(activation);
  const auto h = cell_output_squash<opmath_t>(activation);
  scalar_t* dh_rec = dh_carry.data_ptr<scalar_t>();
  opmath_t* ds = ds_carry.data_ptr<opmath_t>();
  for (int64_t t = steps.steps() - 1; t >= 0; --t) {
    const int64_t first = steps.offset[t], rows = steps.count[t];
    const scalar_t* dh_ext = grad_output.const_data_ptr<scalar_t>() + first * H;
    const scalar_t* hs = squashed_state.const_data_ptr<scalar_t>() + first * H;
    const scalar_t* gate = gates.const_data_ptr<scalar_t>() + first * kNumGateBlocks * H;
    scalar_t* dnet_ptr = dnet.data_ptr<scalar_t>() + first * kNumGateBlocks * H;
    at::parallel_for(0, rows * H, kElementsPerTask, [&](int64_t begin, int64_t end) {
      for_each_row_piece(begin, end, H, [&](int64_t b, int64_t j_begin, int64_t j_end) {
        backward_row(dh_ext + b * H, dh_rec + b * H, ds + b * H, gate + b * kNumGateBlocks * H,
                     hs + b * H, dnet_ptr + b * kNumGateBlocks * H, j_begin, j_end, H, g, h);
      });
    });
    at::Tensor dh_rows = dh_carry.narrow(0, 0, rows);
    const at::Tensor product = recurrent.compute(dh_rows, dnet.narrow(0, first, rows));
    if (!product.is_same(dh_rows)) {
      dh_rows.copy_(product);
    }
  }
}

// Exact BPTT of a small layer (no memory cell blocks): each thread computes its share's errors,
// then its share of dh_{t-1} = dnet_t W_hh. Split by cells, that product reads every thread's
// dnet_t: one barrier per step; the next step's errors need only the thread's own share.
// `weight_hh_panels` is pack_panels of W_hh (3H, H). Same contract as exact_net_errors.
template <typename scalar_t>
void small_layer_exact_errors(const StepRows& steps, const at::Tensor& grad_output,
                              const at::Tensor& weight_hh_panels,
                              const at::Tensor& squashed_state, const at::Tensor& gates,
                              at::Tensor& dnet, at::Tensor& dh_carry, at::Tensor& ds_carry,
                              Activation activation) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t H = dh_carry.size(1), G = kNumGateBlocks * H;
  const auto g = cell_input_squash<opmath_t>(activation);
  const auto h = cell_output_squash<opmath_t>(activation);
  scalar_t* dh_rec = dh_carry.data_ptr<scalar_t>();
  opmath_t* ds = ds_carry.data_ptr<opmath_t>();
  const scalar_t* weight = weight_hh_panels.const_data_ptr<scalar_t>();
  for_grid_slices<scalar_t>(steps.batch, H, [&](const GridSlice& slice) {
    const int64_t j_begin = slice.j_begin, j_end = slice.j_end;
    for (int64_t t = steps.steps() - 1; t >= 0; --t) {
      const int64_t first = steps.offset[t];
      const int64_t b_end = std::min(slice.b_end, steps.count[t]), b_begin = slice.b_begin;
      const scalar_t* dh_ext = grad_output.const_data_ptr<scalar_t>() + first * H;
      const scalar_t* hs = squashed_state.const_data_ptr<scalar_t>() + first * H;
      const scalar_t* gate = gates.const_data_ptr<scalar_t>() + first * G;
      scalar_t* dnet_ptr = dnet.data_ptr<scalar_t>() + first * G;
      for (int64_t b = b_begin; b < b_end && j_begin < j_end; ++b) {
        backward_row(dh_ext + b * H, dh_rec + b * H, ds + b * H, gate + b * G, hs + b * H,
                     dnet_ptr + b * G, j_begin, j_end, H, g, h);
      }
      step_barrier(slice);  // the product below reads every cell's dnet_t
      if (j_begin < j_end && b_begin < b_end) {
        for (int64_t b = b_begin; b < b_end; ++b) {
          std::fill(dh_rec + b * H + j_begin, dh_rec + b * H + j_end, scalar_t(0));
        }
        small_gemm_accumulate(dnet_ptr + b_begin * G, G, weight, G, dh_rec + b_begin * H, H,
                              b_end - b_begin, j_begin, j_end);
      }
    }
  });
}

// h_{t-1} for every row of steps t >= 1, in row order: the forward output of the previous step,
// restricted to the rows still active.
at::Tensor previous_hidden(const StepRows& steps, const at::Tensor& output_2d) {
  const int64_t later_rows = output_2d.size(0) - (steps.steps() > 0 ? steps.count[0] : 0);
  if (steps.dense) {
    return output_2d.narrow(0, 0, later_rows);
  }
  std::vector<int64_t> rows;
  rows.reserve(later_rows);
  for (int64_t t = 1; t < steps.steps(); ++t) {
    for (int64_t b = 0; b < steps.count[t]; ++b) {
      rows.push_back(steps.offset[t - 1] + b);
    }
  }
  return output_2d.index_select(0, at::tensor(rows, at::kLong));
}

BackwardResult lstm_backward_cpu(const at::Tensor& grad_output_in, const at::Tensor& grad_h_n_in,
                                 const at::Tensor& grad_s_n, const at::Tensor& input,
                                 const at::Tensor& weight_ih, const at::Tensor& weight_hh,
                                 const std::optional<at::Tensor>& h0, const at::Tensor& output,
                                 const at::Tensor& squashed_state_in, const at::Tensor& gates_in,
                                 bool truncate, c10::string_view activation_name,
                                 const std::optional<at::Tensor>& batch_sizes,
                                 std::array<bool, 4> output_mask, int64_t cells_per_block) {
  const LayerSizes sizes =
      check_backward_args(grad_output_in, grad_h_n_in, grad_s_n, input, weight_ih, weight_hh, h0,
                          output, squashed_state_in, gates_in, batch_sizes, cells_per_block);
  const Activation activation = parse_activation(activation_name);
  const StepRows steps = step_rows(sizes, batch_sizes);
  const int64_t T = steps.steps(), B = steps.batch, N = sizes.rows.expect_int(),
                I = sizes.input_size.expect_int(), H = sizes.hidden_size.expect_int();
  // Incoming gradients are often expanded (stride 0) views, e.g. from a sum().
  const at::Tensor grad_output = grad_output_in.contiguous();
  const at::Tensor grad_h_n = grad_h_n_in.contiguous();
  const at::Tensor squashed_state = squashed_state_in.contiguous();
  const at::Tensor gates = gates_in.contiguous();
  const auto options = input.options();
  const auto opmath_options = options.dtype(at::toOpMathType(input.scalar_type()));

  at::Tensor dnet = at::empty({N, kNumGateBlocks * H}, options);
  at::Tensor ds_carry = grad_s_n.to(opmath_options, /*non_blocking=*/false,
                                             /*copy=*/true, at::MemoryFormat::Contiguous);
  at::Tensor grad_h0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(),
                                  "lstm1997_backward_cpu", [&] {
    if (truncate) {
      truncated_net_errors<scalar_t>(steps, grad_output, grad_h_n, squashed_state, gates, dnet,
                                     ds_carry, activation);
      // h0 reaches the cell only through the truncated recurrent product, except for an empty
      // sequence, where h_n is h0 itself.
      grad_h0 = T == 0 ? grad_h_n.clone() : at::zeros({B, H}, options);
    } else {
      grad_h0 = grad_h_n.clone();
      if constexpr (std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, double>) {
        if (cells_per_block == 1 && use_small_layer_loop(input, B, kNumGateBlocks * H, H)) {
          small_layer_exact_errors<scalar_t>(steps, grad_output, pack_panels<scalar_t>(weight_hh),
                                             squashed_state, gates, dnet, grad_h0, ds_carry,
                                             activation);
          return;
        }
      }
      // Per-cell rows of weight_hh, so that each step's product takes the per-cell errors.
      const at::Tensor cell_weight_hh =
          cells_per_block == 1
              ? weight_hh
              : weight_hh.index_select(0, block_expansion_index(H, cells_per_block, options));
      // dh_{t-1} = dnet_t @ W_hh = dnet_t @ (W_hh^T)^T: a product with the weight W_hh^T.
      const RepeatedProduct recurrent(cell_weight_hh.t(), B, N);
      exact_net_errors<scalar_t>(steps, grad_output, recurrent, squashed_state, gates, dnet,
                                 grad_h0, ds_carry, activation);
    }
  });
  at::Tensor grad_s0 = ds_carry.to(input.scalar_type());
  // The errors of the weights' rows: a shared gate's error is the sum over its block's cells.
  const at::Tensor dnet_rows = sum_block_gates(dnet, H, cells_per_block, 1);
  const int64_t G = dnet_rows.size(1);

  // Weight and input gradients: large GEMMs over all rows at once, each only if asked for (the
  // input of a first layer rarely needs its gradient).
  const auto [want_input, want_weight_ih, want_weight_hh, want_bias] = output_mask;
  at::Tensor grad_input, grad_weight_ih;
  if (want_input) {
    grad_input = linear_product(dnet_rows, weight_ih.t()).view(input.sizes());
  }
  if (want_weight_ih) {
    grad_weight_ih = transposed_product(dnet_rows, input.reshape({N, I})).contiguous();
  }
  at::Tensor grad_weight_hh;
  if (want_weight_hh) {
    const int64_t first_rows = T > 0 ? steps.count[0] : 0;
    if (N > first_rows) {
      grad_weight_hh = transposed_product(dnet_rows.narrow(0, first_rows, N - first_rows),
                                          previous_hidden(steps, output.reshape({N, H})))
                           .contiguous();
    } else {
      grad_weight_hh = at::zeros({G, H}, options);
    }
    if (T > 0 && present(h0)) {
      grad_weight_hh.add_(transposed_product(dnet_rows.narrow(0, 0, first_rows), *h0));
    }
  }
  const at::Tensor grad_bias = want_bias ? dnet_rows.sum(0) : at::Tensor();
  return {grad_input, grad_weight_ih, grad_weight_hh, grad_bias, grad_h0, grad_s0};
}

}  // namespace

TORCH_LIBRARY_IMPL(lstm1997, CPU, m) {
  m.impl("lstm", &lstm_cpu);
  m.impl("lstm_forward", &lstm_forward_cpu);
  m.impl("lstm_backward", &lstm_backward_cpu);
}

}  // namespace lstm1997
