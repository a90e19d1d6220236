// The CPU kernels of _lstm_online_forward_ and _lstm_online_update_ (ops.cpp): the paper's update
// after every step, as two loops over one step's rows with no ATen op, dispatch or allocation
// between them (but the step's output and a few rows of scratch). A one-step call's cost is then
// its arithmetic and one pass over the traces, not the fixed cost of the chunk ops
// (benchmarks/bench.py, online table). float and double, dense buffers; other calls go to the
// ATen implementations (online.cpp).
//
// Threads split gate rows: the forward's net inputs and the update's gradient rows. Each row is
// summed by one thread in a fixed order, so results do not depend on the thread count.
#include "../checks.h"
#include "../generic/kernels.h"
#include "../online.h"
#include "kernels.h"
#include "vec_math.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

namespace lstm1997 {
namespace cpu {
namespace {

// Where the library's products (a blocked GEMM) take a step's net inputs: from this many
// multiply-adds, which pay for their calls, and more batch rows than net_products's tiles serve
// better.
constexpr int64_t kLibraryProductWork = 1 << 17;
constexpr int64_t kLibraryProductRows = 32;

struct StepShape {
  int64_t B, I, H, R, G, S, K;
  bool feedback;
};

// The step's net inputs without the library's GEMM: net[b, row] = bias[row] + x_b . W_ih[row] +
// r_b . W_hh[row], the weights row-major as they are (they change at every update, so packing
// them would cost a pass over them per call). A tile of kTileRows gate rows by up to
// kTileBatch batch rows keeps its kTileRows * kTileBatch sums in registers: each weight vector
// loaded serves kTileBatch batch rows and each input vector kTileRows gate rows. At few batch
// rows this beats the library's GEMM, which is tuned for many (benchmarks/README.md, "the forward's
// products"). Each sum is made by one thread in a fixed order: results do not depend on the
// thread count.
constexpr int64_t kTileRows = 4;
constexpr int kTileBatch = 4;

template <typename scalar_t, int kBatch>
void net_tile(const scalar_t* const (&weight_rows)[2][kTileRows],
              const scalar_t* const (&input_rows)[2][kBatch], const int64_t (&widths)[2],
              scalar_t (&sums)[kTileRows][kBatch]) {
  using Vec = at::vec::Vectorized<scalar_t>;
  constexpr int64_t L = Vec::size();
  Vec acc[kTileRows][kBatch];
  for (int64_t k = 0; k < kTileRows; ++k) {
    for (int j = 0; j < kBatch; ++j) {
      acc[k][j] = Vec(0);
    }
  }
  for (int part = 0; part < 2; ++part) {  // x_t with W_ih, then r_{t-1} with W_hh
    const int64_t width = widths[part];
    const auto add = [&](int64_t f, int64_t count) {
      Vec w[kTileRows], v[kBatch];
      for (int64_t k = 0; k < kTileRows; ++k) {
        w[k] = count == L ? Vec::loadu(weight_rows[part][k] + f)
                          : Vec::loadu(weight_rows[part][k] + f, count);
      }
      for (int j = 0; j < kBatch; ++j) {
        v[j] = count == L ? Vec::loadu(input_rows[part][j] + f)
                          : Vec::loadu(input_rows[part][j] + f, count);
      }
      for (int64_t k = 0; k < kTileRows; ++k) {
        for (int j = 0; j < kBatch; ++j) {
          acc[k][j] = at::vec::fmadd(w[k], v[j], acc[k][j]);
        }
      }
    };
    int64_t f = 0;
    for (; f + L <= width; f += L) {
      add(f, L);
    }
    if (f < width) {  // zeros past the end
      add(f, width - f);
    }
  }
  for (int64_t k = 0; k < kTileRows; ++k) {
    for (int j = 0; j < kBatch; ++j) {
      sums[k][j] = at::vec::vec_reduce_all<scalar_t>(
          [](const Vec& p, const Vec& q) { return p + q; }, acc[k][j]);
    }
  }
}

#if defined(CPU_CAPABILITY_AVX512)
// Lane r of the result: the sum of the 16 lanes of a[r]. Sixteen horizontal sums in 45
// instructions (pairs of vectors folded by unpacks within 128-bit lanes, then 128-bit lanes by
// shuffles), where one sum alone takes about 8.
inline __m512 lane_sums(const __m512 (&a)[16]) {
  __m512 pairs[8];  // per 128-bit lane: [a2k, a2k+1, a2k, a2k+1], partial sums
  for (int k = 0; k < 8; ++k) {
    pairs[k] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * k], a[2 * k + 1]),
                             _mm512_unpackhi_ps(a[2 * k], a[2 * k + 1]));
  }
  __m512 quads[4];  // per 128-bit lane: [a4m, a4m+1, a4m+2, a4m+3], each that lane's sum
  for (int m = 0; m < 4; ++m) {
    const __m512d low = _mm512_castps_pd(pairs[2 * m]), high = _mm512_castps_pd(pairs[2 * m + 1]);
    quads[m] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(low, high)),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(low, high)));
  }
  const auto fold = [](__m512 x, __m512 y) {  // [x0 + x1, x2 + x3, y0 + y1, y2 + y3] by lanes
    return _mm512_add_ps(_mm512_shuffle_f32x4(x, y, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(x, y, _MM_SHUFFLE(3, 1, 3, 1)));
  };
  return fold(fold(quads[0], quads[1]), fold(quads[2], quads[3]));
}

// net_products for one batch row, float32 on AVX-512: 16 gate rows at a time, each row's dot
// product in a register of its own (16 independent chains of multiply-adds where net_tile's
// one-row case has 4) and the 16 sums reduced together by lane_sums, where net_tile reduces each
// alone. A row's sum does not depend on the thread count either.
void net_products_one_row(const StepShape& n, const float* weight_ih, const float* weight_hh,
                          const float* bias_ih, const float* bias_hh, const float* step_input,
                          const float* previous, float* net) {
  constexpr int64_t kRows = 16;
  const int64_t I = n.I, R = n.R, G = n.G;
  const int64_t tiles = (G + kRows - 1) / kRows;
  at::parallel_for(0, tiles, row_grain(kRows * (I + R)), [&](int64_t begin, int64_t end) {
    for (int64_t tile = begin; tile < end; ++tile) {
      const int64_t row0 = tile * kRows, rows = std::min(kRows, G - row0);
      const __mmask16 valid = static_cast<__mmask16>((1u << rows) - 1);
      __m512 sums[kRows];
      for (int64_t k = 0; k < kRows; ++k) {
        sums[k] = _mm512_setzero_ps();
      }
      const float* weights[2] = {weight_ih, weight_hh};
      const float* inputs[2] = {step_input, previous};
      const int64_t widths[2] = {I, R};
      for (int part = 0; part < 2; ++part) {
        const int64_t width = widths[part];
        // Rows past G (a last partial tile) repeat row G - 1; their sums are not stored.
        const float* rows_data[kRows];
        for (int64_t k = 0; k < kRows; ++k) {
          rows_data[k] = weights[part] + std::min(row0 + k, G - 1) * width;
        }
        for (int64_t f = 0; f < width; f += 16) {
          const __mmask16 columns = width - f >= 16
                                        ? static_cast<__mmask16>(0xFFFF)
                                        : static_cast<__mmask16>((1u << (width - f)) - 1);
          const __m512 v = _mm512_maskz_loadu_ps(columns, inputs[part] + f);
          for (int64_t k = 0; k < kRows; ++k) {
            sums[k] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(columns, rows_data[k] + f), v, sums[k]);
          }
        }
      }
      __m512 bias = _mm512_setzero_ps();  // bias_ih + bias_hh, as net_products adds them
      if (bias_ih != nullptr) {
        bias = _mm512_maskz_loadu_ps(valid, bias_ih + row0);
      }
      if (bias_hh != nullptr) {
        bias = _mm512_add_ps(bias, _mm512_maskz_loadu_ps(valid, bias_hh + row0));
      }
      _mm512_mask_storeu_ps(net + row0, valid, _mm512_add_ps(bias, lane_sums(sums)));
    }
  });
}
#endif

template <typename scalar_t>
void net_products(const StepShape& n, const scalar_t* weight_ih, const scalar_t* weight_hh,
                  const scalar_t* bias_ih, const scalar_t* bias_hh, const scalar_t* step_input,
                  const scalar_t* previous, scalar_t* net) {
  const int64_t B = n.B, I = n.I, R = n.R, G = n.G;
#if defined(CPU_CAPABILITY_AVX512)
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (B == 1) {
      return net_products_one_row(n, weight_ih, weight_hh, bias_ih, bias_hh, step_input,
                                  previous, net);
    }
  }
#endif
  const int64_t tiles = (G + kTileRows - 1) / kTileRows;
  const int64_t widths[2] = {I, R};
  at::parallel_for(0, tiles, row_grain(kTileRows * B * (I + R)), [&](int64_t begin, int64_t end) {
    for (int64_t tile = begin; tile < end; ++tile) {
      // A last tile past G repeats row G - 1 (computed, not stored).
      const int64_t row0 = tile * kTileRows;
      const scalar_t* weight_rows[2][kTileRows];
      for (int64_t k = 0; k < kTileRows; ++k) {
        const int64_t row = std::min(row0 + k, G - 1);
        weight_rows[0][k] = weight_ih + row * I;
        weight_rows[1][k] = weight_hh + row * R;
      }
      const auto run = [&](auto batch, int64_t b0) {
        constexpr int kBatch = decltype(batch)::value;
        const scalar_t* input_rows[2][kBatch];
        for (int j = 0; j < kBatch; ++j) {
          input_rows[0][j] = step_input + (b0 + j) * I;
          input_rows[1][j] = previous + (b0 + j) * R;
        }
        scalar_t sums[kTileRows][kBatch];
        net_tile<scalar_t, kBatch>(weight_rows, input_rows, widths, sums);
        for (int64_t k = 0; k < kTileRows && row0 + k < G; ++k) {
          const int64_t row = row0 + k;
          const scalar_t bias = (bias_ih != nullptr ? bias_ih[row] : scalar_t(0)) +
                                (bias_hh != nullptr ? bias_hh[row] : scalar_t(0));
          for (int j = 0; j < kBatch; ++j) {
            net[(b0 + j) * G + row] = bias + sums[k][j];
          }
        }
      };
      int64_t b0 = 0;
      for (; b0 + kTileBatch <= B; b0 += kTileBatch) {
        run(std::integral_constant<int, kTileBatch>{}, b0);
      }
      switch (B - b0) {
        case 1: run(std::integral_constant<int, 1>{}, b0); break;
        case 2: run(std::integral_constant<int, 2>{}, b0); break;
        case 3: run(std::integral_constant<int, 3>{}, b0); break;
        default: break;
      }
    }
  });
}
static_assert(kTileBatch == 4, "net_products's switch covers 1 to 3 leftover batch rows");

template <typename scalar_t>
void forward_step(const StepShape& n, const scalar_t* weight_ih,
                  const scalar_t* weight_hh, const scalar_t* bias_ih, const scalar_t* bias_hh,
                  scalar_t* hidden, scalar_t* cell_state, scalar_t* step_input,
                  scalar_t* previous, scalar_t* squashed_state, scalar_t* gates,
                  scalar_t* output, const scalar_t* library_net, Squash<scalar_t> g,
                  Squash<scalar_t> h) {
  const int64_t B = n.B, H = n.H, R = n.R, G = n.G, S = n.S, K = n.K;
  std::vector<scalar_t> net_rows;
  const scalar_t* net = library_net;  // (B, G), from the library when it was given
  if (net == nullptr) {
    net_rows.resize(B * G);
    net_products(n, weight_ih, weight_hh, bias_ih, bias_hh, step_input, previous,
                 net_rows.data());
    net = net_rows.data();
  }
  using Vec = at::vec::Vectorized<scalar_t>;
  for (int64_t b = 0; b < B; ++b) {
    const scalar_t* row_net = net + b * G;
    scalar_t* row_gates = gates + b * kNumGates * H;
    scalar_t* state = cell_state + b * H;
    int64_t j = 0;
    // Without blocks a cell's three net inputs lie at j, H + j, 2H + j: whole vectors of cells.
    if (S == 1) {
      for (; j + Vec::size() <= H; j += Vec::size()) {
        const CellStep<Vec> cell = cell_forward<Vec, scalar_t>(
            Vec::loadu(row_net + j), Vec::loadu(row_net + H + j), Vec::loadu(row_net + 2 * H + j),
            Vec::loadu(state + j), g, h);
        cell.input_gate.store(row_gates + kInputGate * H + j);
        cell.cell_input.store(row_gates + kCellInput * H + j);
        cell.output_gate.store(row_gates + kOutputGate * H + j);
        cell.cell_state.store(state + j);
        cell.squashed_state.store(squashed_state + b * H + j);
        cell.hidden.store(output + b * H + j);
      }
    }
    for (; j < H; ++j) {
      const CellStep<scalar_t> cell = cell_forward<scalar_t, scalar_t>(
          row_net[j / S], row_net[K + j], row_net[K + H + j / S], state[j], g, h);
      row_gates[kInputGate * H + j] = cell.input_gate;
      row_gates[kCellInput * H + j] = cell.cell_input;
      row_gates[kOutputGate * H + j] = cell.output_gate;
      state[j] = cell.cell_state;
      squashed_state[b * H + j] = cell.squashed_state;
      output[b * H + j] = cell.hidden;
    }
    // r_t: the cell outputs, or with gate feedback [input gates | cell outputs | output gates],
    // a block's gate read at its first cell.
    scalar_t* recurrent = hidden + b * R;
    if (!n.feedback) {
      std::copy(output + b * H, output + (b + 1) * H, recurrent);
      continue;
    }
    for (int64_t k = 0; k < K; ++k) {
      recurrent[k] = row_gates[kInputGate * H + k * S];
      recurrent[K + H + k] = row_gates[kOutputGate * H + k * S];
    }
    std::copy(output + b * H, output + (b + 1) * H, recurrent + K);
  }
}

// row += local * features, and target += scale * row (the new row) if target is not null.
template <typename scalar_t>
void advance_and_add(scalar_t* row, scalar_t local, const scalar_t* features, scalar_t scale,
                     scalar_t* target, int64_t width) {
  using Vec = at::vec::Vectorized<scalar_t>;
  int64_t f = 0;
  if (target == nullptr) {
    for (; f + Vec::size() <= width; f += Vec::size()) {
      at::vec::fmadd(Vec(local), Vec::loadu(features + f), Vec::loadu(row + f)).store(row + f);
    }
    for (; f < width; ++f) {
      row[f] += local * features[f];
    }
    return;
  }
  for (; f + Vec::size() <= width; f += Vec::size()) {
    const Vec value = at::vec::fmadd(Vec(local), Vec::loadu(features + f), Vec::loadu(row + f));
    value.store(row + f);
    at::vec::fmadd(Vec(scale), value, Vec::loadu(target + f)).store(target + f);
  }
  for (; f < width; ++f) {
    row[f] += local * features[f];
    target[f] += scale * row[f];
  }
}

// The update's three groups of features: the input, r_{t-1} and the constant 1 of the biases
// (kBiasGroup, the last).
constexpr int kBiasGroup = 2;

template <typename scalar_t>
struct FeatureGroup {
  scalar_t* trace;  // (B, 2H, width): row r of batch row b at b * batch_stride + r * row_stride
  int64_t batch_stride, row_stride;
  const scalar_t* features;  // (B, width)
  int64_t width;
  scalar_t* targets[2];  // (G, width) each, or null
};

// One step's per-row terms: for each batch row b, the local terms of the traced rows
// (d s_t / d net of the input gate and cell input, (B, 2H)), the error of s_t (B, H) and the error
// of each output gate's net input (B, K), a block's cells summed.
template <typename scalar_t>
struct StepErrors {
  const scalar_t* local;
  const scalar_t* state_error;   // null without grad_output
  const scalar_t* output_error;  // null without grad_output
};

// A gate row's cells: a block's S cells for an input gate, one cell for a cell input; an output
// gate has no trace (traced = -1).
struct GateRow {
  int64_t first_cell, cells, traced;
};

inline GateRow gate_row(const StepShape& n, int64_t row) {
  if (row < n.K) {
    return {row * n.S, n.S, row * n.S};
  }
  if (row < n.K + n.H) {
    return {row - n.K, 1, n.H + row - n.K};
  }
  return {(row - n.K - n.H) * n.S, n.S, -1};
}

// Vectors of a gradient row summed in registers over the batch rows: each batch row's visit to a
// trace row reads 8 vectors in a row (4 made the pass about 1.5 times slower; benchmarks/README.md,
// "the update's pass summed in registers").
constexpr int kStretchVectors = 8;

// Values f0 .. f0 + kVectors * Vec::size() of one gate row's gradient in one feature group (the
// last vector holding `last` values): every batch row's traced rows advance (trace += local *
// features) and the new trace rows, times their errors, are summed in registers; an output gate's
// row sums error * features. The sum, times alpha, is added to the targets. Each trace row is read
// and written once, and no partial sum goes through memory.
// kMasked: the last vector is partial (a row's tail), read and written under a mask; whole
// stretches take plain loads and stores. Inlined into update_gate_row: GCC made it a call of its
// own, about 3,000 a pass at B = 16, I = 128, H = 256; inlined, the op alone ran 1.6 to 2.1
// times faster in five of six alternating pairs on one thread (benchmarks/README.md, "the
// update's pass, group by group").
template <typename scalar_t, int kVectors, bool kMasked>
C10_ALWAYS_INLINE void update_stretch(const StepShape& n, const FeatureGroup<scalar_t>& group,
                                      const StepErrors<scalar_t>& errors, const GateRow& cells,
                                      int64_t row, int64_t f0, int64_t last, scalar_t alpha) {
  using Vec = at::vec::Vectorized<scalar_t>;
  constexpr int64_t V = Vec::size();
  const int64_t w = group.width, H = n.H;
  const bool summed = errors.state_error != nullptr;
  const auto load = [&](const scalar_t* values, int v) {
    return kMasked && v + 1 == kVectors ? Vec::loadu(values + v * V, last)
                                        : Vec::loadu(values + v * V);
  };
  const auto store = [&](const Vec& value, scalar_t* values, int v) {
    if (kMasked && v + 1 == kVectors) {
      value.store(values + v * V, last);
    } else {
      value.store(values + v * V);
    }
  };
  Vec sum[kVectors];
#pragma GCC unroll 8
  for (int v = 0; v < kVectors; ++v) {
    sum[v] = Vec(0);
  }
  if (cells.traced < 0) {
    if (!summed) {
      return;  // an output gate's row has no trace to advance
    }
    const scalar_t* output_error = errors.output_error + (row - n.K - H);
    for (int64_t b = 0; b < n.B; ++b) {
      const scalar_t* features = group.features + b * w + f0;
      const Vec error(output_error[b * n.K]);
#pragma GCC unroll 8
      for (int v = 0; v < kVectors; ++v) {
        sum[v] = at::vec::fmadd(error, load(features, v), sum[v]);
      }
    }
  } else {
    const auto advance = [&](int64_t b, int64_t c) {
      const scalar_t* features = group.features + b * w + f0;
      const int64_t traced = b * 2 * H + cells.traced + c;
      scalar_t* trace =
          group.trace + b * group.batch_stride + (cells.traced + c) * group.row_stride + f0;
      const Vec local(errors.local[traced]);
      const Vec error(summed ? errors.state_error[b * H + cells.first_cell + c] : scalar_t(0));
#pragma GCC unroll 8
      for (int v = 0; v < kVectors; ++v) {
        const Vec value = at::vec::fmadd(local, load(features, v), load(trace, v));
        store(value, trace, v);
        sum[v] = at::vec::fmadd(error, value, sum[v]);
      }
    };
    // One cell per row (cell inputs; input gates without blocks) as a loop of its own: with the
    // loop over a block's cells inside, GCC stored the sums to the stack at every batch row.
    if (cells.cells == 1) {
      for (int64_t b = 0; b < n.B; ++b) {
        advance(b, 0);
      }
    } else {
      for (int64_t b = 0; b < n.B; ++b) {
        for (int64_t c = 0; c < cells.cells; ++c) {
          advance(b, c);
        }
      }
    }
  }
  if (!summed) {
    return;
  }
  const Vec scale(alpha);
  for (scalar_t* target : group.targets) {
    if (target != nullptr) {
      scalar_t* target_row = target + row * w + f0;
#pragma GCC unroll 8
      for (int v = 0; v < kVectors; ++v) {
        store(at::vec::fmadd(scale, sum[v], load(target_row, v)), target_row, v);
      }
    }
  }
}

// update_gate_row for a group of one feature (the biases', whose feature is the constant 1; an
// input or recurrent state of one value): scalar code, the same operations in the same order as
// update_stretch's, so the same bits, without its one-lane masked vectors, whose rows lie a value
// apart (benchmarks/README.md, "Issue #20, eighth session").
template <typename scalar_t>
void update_single_feature_row(const StepShape& n, const FeatureGroup<scalar_t>& group,
                               const StepErrors<scalar_t>& errors, const GateRow& cells,
                               int64_t row, scalar_t alpha) {
  const bool summed = errors.state_error != nullptr;
  if (cells.traced < 0 && !summed) {
    return;  // an output gate's row has no trace to advance
  }
  scalar_t sum = 0;
  if (cells.traced < 0) {
    const scalar_t* output_error = errors.output_error + (row - n.K - n.H);
    for (int64_t b = 0; b < n.B; ++b) {
      sum = std::fma(output_error[b * n.K], group.features[b], sum);
    }
  } else {
    for (int64_t b = 0; b < n.B; ++b) {
      for (int64_t c = 0; c < cells.cells; ++c) {
        const int64_t traced = b * 2 * n.H + cells.traced + c;
        scalar_t& trace =
            group.trace[b * group.batch_stride + (cells.traced + c) * group.row_stride];
        const scalar_t value = std::fma(errors.local[traced], group.features[b], trace);
        trace = value;
        if (summed) {
          sum = std::fma(errors.state_error[b * n.H + cells.first_cell + c], value, sum);
        }
      }
    }
  }
  if (!summed) {
    return;
  }
  for (scalar_t* target : group.targets) {
    if (target != nullptr) {
      target[row] = std::fma(alpha, sum, target[row]);
    }
  }
}

template <typename scalar_t>
void update_gate_row(const StepShape& n, const FeatureGroup<scalar_t>& group,
                     const StepErrors<scalar_t>& errors, int64_t row, scalar_t alpha) {
  using Vec = at::vec::Vectorized<scalar_t>;
  constexpr int64_t V = Vec::size();
  const GateRow cells = gate_row(n, row);
  if (group.width == 1) {
    return update_single_feature_row(n, group, errors, cells, row, alpha);
  }
  constexpr int64_t kStretch = kStretchVectors * V;
  int64_t f0 = 0;
  for (; f0 + kStretch <= group.width; f0 += kStretch) {
    update_stretch<scalar_t, kStretchVectors, false>(n, group, errors, cells, row, f0, V, alpha);
  }
  if (f0 == group.width) {
    return;
  }
  const int64_t values = group.width - f0;
  const int64_t vectors = (values + V - 1) / V, last = values - (vectors - 1) * V;
  switch (vectors) {
#define LSTM1997_STRETCH(k)                                                                  \
  case k:                                                                                    \
    update_stretch<scalar_t, k, true>(n, group, errors, cells, row, f0, last, alpha);        \
    break;
    LSTM1997_STRETCH(1)
    LSTM1997_STRETCH(2)
    LSTM1997_STRETCH(3)
    LSTM1997_STRETCH(4)
    LSTM1997_STRETCH(5)
    LSTM1997_STRETCH(6)
    LSTM1997_STRETCH(7)
#undef LSTM1997_STRETCH
  }
}
static_assert(kStretchVectors == 8, "update_gate_row's cases cover a tail of 1 to 7 vectors");

// The update's pass: gate row by gate row, each row's gradient summed over the batch rows by one
// thread in a fixed order (so results do not depend on the thread count). Threads take parts of
// about equal work (an equal share of the traced cells, whose rows read and write their traces,
// and of the output gates' rows, which only read the features), and go through their rows once
// per feature group: a row's visit reads one stretch from each batch row's trace (one stream
// through memory with the traces gate row by gate row, as OnlineLSTM keeps them; B streams with
// contiguous traces), where taking the three groups row by row kept three times the streams going
// and made the pass 1.5 to 3 times slower on one thread (benchmarks/README.md, "the update's
// pass, group by group").
template <typename scalar_t>
void update_step(const StepShape& n, const FeatureGroup<scalar_t> (&groups)[3],
                 const scalar_t* grad_output, const scalar_t* squashed_state,
                 const scalar_t* gates, scalar_t alpha, Squash<scalar_t> g, Squash<scalar_t> h) {
  const int64_t B = n.B, H = n.H, G = n.G, S = n.S, K = n.K;
  // output_error is summed over a block's cells.
  std::vector<scalar_t> scratch(B * (3 * H + K), scalar_t(0));
  scalar_t* const local = scratch.data();           // (B, 2H)
  scalar_t* const state_error = local + B * 2 * H;  // (B, H)
  scalar_t* const output_error = state_error + B * H;  // (B, K)
  for (int64_t b = 0; b < B; ++b) {
    const scalar_t* row_gates = gates + b * kNumGates * H;
    for (int64_t k = 0, j = 0; k < K; ++k) {
      for (int64_t c = 0; c < S; ++c, ++j) {
        const scalar_t i = row_gates[kInputGate * H + j], z = row_gates[kCellInput * H + j],
                       o = row_gates[kOutputGate * H + j];
        local[b * 2 * H + j] = z * i * (1 - i);
        local[b * 2 * H + H + j] = i * g.grad_from_value(z);
        if (grad_output != nullptr) {
          const scalar_t dh = grad_output[b * H + j], y = squashed_state[b * H + j];
          state_error[b * H + j] = dh * o * h.grad_from_value(y);
          output_error[b * K + k] += dh * y * o * (1 - o);
        }
      }
    }
  }
  const StepErrors<scalar_t> errors{local, grad_output != nullptr ? state_error : nullptr,
                                    grad_output != nullptr ? output_error : nullptr};
  // The pass's work, in values of a feature row, for how many parts it takes: a traced cell's
  // trace is read and written, an output gate's row only reads the features. Every cell is
  // traced twice (its input gate's and its cell input's rows).
  const int64_t width = groups[0].width + groups[1].width + groups[2].width;
  const int64_t total = B * width * (3 * 2 * H + K);
  const int64_t parts = std::max<int64_t>(
      1, std::min<int64_t>(at::get_num_threads(), total / (3 * row_grain(1))));
  // Part p takes the traced rows traced_bounds[p] .. traced_bounds[p + 1] (the input gates' and
  // cell inputs', K + H of them, an equal share of the 2H traced cells) and the output gates' rows
  // output_bounds[p] .. output_bounds[p + 1] (an equal share of the K). How much cheaper an
  // output gate's row is depends on where the traces lie: parts cut at a fixed cost ratio (3 to
  // 1) gave the main thread a quarter more of the loops' work than the other at B = 16, I = 128,
  // H = 256, where the traced rows come from memory (benchmarks/README.md, "the update's
  // parts").
  const int64_t traced_rows = K + H;
  std::vector<int64_t> traced_bounds(parts + 1, traced_rows), output_bounds(parts + 1, G);
  traced_bounds[0] = 0;
  for (int64_t row = 0, cells = 0, p = 1; row < traced_rows && p < parts; ++row) {
    cells += gate_row(n, row).cells;
    if (cells * parts >= p * 2 * H) {
      traced_bounds[p++] = row + 1;
    }
  }
  for (int64_t p = 0; p < parts; ++p) {
    output_bounds[p] = traced_rows + K * p / parts;
  }
  // Runs fn(row) on the rows of parts begin .. end: their traced rows, then their output gates'.
  const auto for_rows = [&](int64_t begin, int64_t end, const auto& fn) {
    for (int64_t row = traced_bounds[begin]; row < traced_bounds[end]; ++row) {
      fn(row);
    }
    for (int64_t row = output_bounds[begin]; row < output_bounds[end]; ++row) {
      fn(row);
    }
  };
  const auto update_rows = [&](int64_t begin, int64_t end) {
    if (B == 1 && S == 1 && grad_output != nullptr) {
      // One batch row and one cell per gate row: the gradient row is error * (the new trace
      // row), or error * features for an output gate, added to the targets as it is made.
      for (const FeatureGroup<scalar_t>& group : groups) {
        const int64_t w = group.width;
        if (&group == &groups[kBiasGroup]) {
          // The biases' group (the feature is the constant 1): a value per row, in one loop
          // over the rows rather than a call of the vector loops per row.
          for_rows(begin, end, [&](int64_t row) {
            const GateRow cells = gate_row(n, row);
            scalar_t gradient;
            if (cells.traced >= 0) {
              scalar_t& trace = group.trace[cells.traced * group.row_stride];
              const scalar_t value = trace + local[cells.traced];
              trace = value;
              gradient = (alpha * state_error[cells.first_cell]) * value;
            } else {
              gradient = alpha * output_error[cells.first_cell];
            }
            for (scalar_t* target : group.targets) {
              if (target != nullptr) {
                target[row] += gradient;
              }
            }
          });
          continue;
        }
        // The input's and r_{t-1}'s groups have one target each (the bias group two).
        scalar_t* const target = group.targets[0];
        for_rows(begin, end, [&](int64_t row) {
          const GateRow cells = gate_row(n, row);
          scalar_t* const target_row = target != nullptr ? target + row * w : nullptr;
          if (cells.traced >= 0) {
            advance_and_add(group.trace + cells.traced * group.row_stride, local[cells.traced],
                            group.features,
                            alpha * state_error[cells.first_cell], target_row, w);
          } else if (target_row != nullptr) {
            add_scaled(target_row, alpha * output_error[cells.first_cell], group.features, w);
          }
        });
      }
      return;
    }
    for (int64_t p = begin; p < end; ++p) {
      for (const FeatureGroup<scalar_t>& group : groups) {
        for_rows(p, p + 1, [&](int64_t row) { update_gate_row(n, group, errors, row, alpha); });
      }
    }
  };
  if (parts == 1) {
    return update_rows(0, 1);
  }
  at::parallel_for(0, parts, 1, update_rows);
}

template <typename scalar_t>
scalar_t* data_or_null(const at::Tensor& tensor) {
  return tensor.numel() == 0 ? nullptr : tensor.data_ptr<scalar_t>();
}

bool dense(std::initializer_list<const at::Tensor*> tensors) {
  return std::all_of(tensors.begin(), tensors.end(),
                     [](const at::Tensor* tensor) { return tensor->is_contiguous(); });
}

bool loop_dtype(const at::Tensor& tensor) {
  return (tensor.scalar_type() == at::kFloat || tensor.scalar_type() == at::kDouble) &&
         !generic::forced_on_cpu();
}

}  // namespace

at::Tensor online_forward(const at::Tensor& hidden, const at::Tensor& cell_state,
                          const at::Tensor& step_input, const at::Tensor& previous,
                          const at::Tensor& squashed_state, const at::Tensor& gates,
                          const at::Tensor& input, const at::Tensor& weight_ih,
                          const at::Tensor& weight_hh, const std::optional<at::Tensor>& bias_ih,
                          const std::optional<at::Tensor>& bias_hh, c10::string_view activation,
                          int64_t cells_per_block, bool gate_feedback) {
  if (!loop_dtype(input) ||
      !dense({&hidden, &cell_state, &step_input, &previous, &squashed_state, &gates})) {
    return online_forward_by_ops(hidden, cell_state, step_input, previous, squashed_state, gates,
                                 input, weight_ih, weight_hh, bias_ih, bias_hh, activation,
                                 cells_per_block, gate_feedback);
  }
  const LayerSizes sizes = check_online_forward_sizes(
      hidden, cell_state, step_input, previous, squashed_state, gates, input, weight_ih,
      weight_hh, bias_ih, bias_hh, activation, cells_per_block, gate_feedback);
  const int64_t H = sizes.hidden_size.expect_int();
  const StepShape shape{sizes.batch.expect_int(),     sizes.input_size.expect_int(),
                        H,
                        sizes.recurrent_size.expect_int(),
                        sizes.gate_rows.expect_int(), cells_per_block,
                        H / cells_per_block,           gate_feedback};
  // The step (B, I), or a chunk of one (1, B, I): dense, the same bytes either way (no view
  // made of it: at the paper's sizes a view costs about what the step's products do).
  const at::Tensor x = input.contiguous(), w_ih = weight_ih.contiguous(),
                   w_hh = weight_hh.contiguous();
  const at::Tensor b_ih = present(bias_ih) ? bias_ih->contiguous() : at::Tensor();
  const at::Tensor b_hh = present(bias_hh) ? bias_hh->contiguous() : at::Tensor();
  // A chunk of one step gets its output as a chunk of one.
  at::Tensor output = input.dim() == 3 ? at::empty({1, shape.B, H}, input.options())
                                       : at::empty({shape.B, H}, input.options());
  const Activation kind = parse_activation(activation);
  const int64_t B = shape.B;
  // r_{t-1} and x_t into the step's buffers (dense, of one dtype: checked), read from there.
  std::memmove(previous.data_ptr(), hidden.const_data_ptr(), hidden.nbytes());
  std::memmove(step_input.data_ptr(), x.const_data_ptr(), x.nbytes());
  // With many batch rows and enough work the net inputs come from the library's products,
  // else from net_products's tiles.
  at::Tensor net;
  if (B > kLibraryProductRows && B * shape.G * (shape.I + shape.R) >= kLibraryProductWork) {
    net = b_ih.defined() ? at::addmm(b_ih, step_input, w_ih.t()) : at::mm(step_input, w_ih.t());
    if (b_hh.defined()) {
      net.add_(b_hh);
    }
    net.addmm_(previous, w_hh.t());
  }
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "lstm1997_online_forward_cpu", [&] {
    forward_step<scalar_t>(
        shape, w_ih.const_data_ptr<scalar_t>(),
        w_hh.const_data_ptr<scalar_t>(), b_ih.defined() ? b_ih.const_data_ptr<scalar_t>() : nullptr,
        b_hh.defined() ? b_hh.const_data_ptr<scalar_t>() : nullptr, hidden.data_ptr<scalar_t>(),
        cell_state.data_ptr<scalar_t>(), step_input.data_ptr<scalar_t>(),
        previous.data_ptr<scalar_t>(), squashed_state.data_ptr<scalar_t>(),
        gates.data_ptr<scalar_t>(), output.data_ptr<scalar_t>(),
        net.defined() ? net.const_data_ptr<scalar_t>() : nullptr,
        cell_input_squash<scalar_t>(kind), cell_output_squash<scalar_t>(kind));
  });
  return output;
}

void online_update(const at::Tensor& trace_ih, const at::Tensor& trace_hh,
                   const at::Tensor& trace_bias, const at::Tensor& target_weight_ih,
                   const at::Tensor& target_weight_hh, const at::Tensor& target_bias_ih,
                   const at::Tensor& target_bias_hh,
                   const std::optional<at::Tensor>& grad_output, const at::Tensor& step_input,
                   const at::Tensor& previous, const at::Tensor& squashed_state,
                   const at::Tensor& gates, double alpha, c10::string_view activation,
                   int64_t cells_per_block, bool gate_feedback) {
  if (!loop_dtype(step_input) || !online_kernel_layout(trace_ih, trace_hh, trace_bias) ||
      !dense({&target_weight_ih, &target_weight_hh, &target_bias_ih, &target_bias_hh})) {
    return online_update_by_ops(trace_ih, trace_hh, trace_bias, target_weight_ih,
                                target_weight_hh, target_bias_ih, target_bias_hh, grad_output,
                                step_input, previous, squashed_state, gates, alpha, activation,
                                cells_per_block, gate_feedback);
  }
  const LayerSizes sizes = check_online_update_args(
      trace_ih, trace_hh, trace_bias, target_weight_ih, target_weight_hh, target_bias_ih,
      target_bias_hh, grad_output, step_input, previous, squashed_state, gates, activation,
      cells_per_block, gate_feedback);
  const int64_t H = sizes.hidden_size.expect_int();
  const StepShape shape{sizes.batch.expect_int(),     sizes.input_size.expect_int(),
                        H,
                        sizes.recurrent_size.expect_int(),
                        sizes.gate_rows.expect_int(), cells_per_block,
                        H / cells_per_block,           gate_feedback};
  const at::Tensor x = step_input.contiguous(), r = previous.contiguous(),
                   y = squashed_state.contiguous(), cell_gates = gates.contiguous();
  const at::Tensor dh = present(grad_output) ? grad_output->contiguous() : at::Tensor();
  const Activation kind = parse_activation(activation);
  AT_DISPATCH_FLOATING_TYPES(step_input.scalar_type(), "lstm1997_online_update_cpu", [&] {
    const std::vector<scalar_t> ones(shape.B, scalar_t(1));
    const FeatureGroup<scalar_t> groups[3] = {
        {trace_ih.data_ptr<scalar_t>(), trace_ih.stride(0), trace_ih.stride(1),
         x.const_data_ptr<scalar_t>(), shape.I,
         {data_or_null<scalar_t>(target_weight_ih), nullptr}},
        {trace_hh.data_ptr<scalar_t>(), trace_hh.stride(0), trace_hh.stride(1),
         r.const_data_ptr<scalar_t>(), shape.R,
         {data_or_null<scalar_t>(target_weight_hh), nullptr}},
        {trace_bias.data_ptr<scalar_t>(), trace_bias.stride(0), trace_bias.stride(1), ones.data(),
         1, {data_or_null<scalar_t>(target_bias_ih), data_or_null<scalar_t>(target_bias_hh)}}};
    update_step<scalar_t>(shape, groups,
                          dh.defined() ? dh.const_data_ptr<scalar_t>() : nullptr,
                          y.const_data_ptr<scalar_t>(), cell_gates.const_data_ptr<scalar_t>(),
                          static_cast<scalar_t>(alpha), cell_input_squash<scalar_t>(kind),
                          cell_output_squash<scalar_t>(kind));
  });
}

}  // namespace cpu

TORCH_LIBRARY_IMPL(lstm1997, CPU, m) {
  m.impl("_lstm_online_forward_", &cpu::online_forward);
  m.impl("_lstm_online_update_", &cpu::online_update);
}

}  // namespace lstm1997
