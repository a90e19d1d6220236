// The CPU kernel of lstm_online_step_: online.cpp's online_step with a trace pass that reads and
// writes every row of the traces once. Each row trace[b, r, :] is read, its sum with the carried
// error taken (the gradient through the steps before the chunk needs the traces as they come in),
// the chunk's terms added, and written back: the traces (B * 2H * (I + R + 1) values, 12 MB at
// B = 16, I = 128, H = 256) are the whole memory traffic of an online step, and ATen ops would
// cross them three to five times (benchmarks/bench.py, online table).
// Threads split the traced rows r: each owns its rows of the gradient sums, so the result does
// not depend on the thread count.
#include "../checks.h"
#include "../generic/kernels.h"
#include "../online.h"
#include "kernels.h"
#include "vec_math.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <vector>

namespace lstm1997 {
namespace cpu {
namespace {

// Values f_begin .. width of one trace row, one at a time: sum += error * row;
// row += sum_t local_t * features_t. pass_row's tail, and the row blocks' (the same operations in
// the same order, so the same bits).
template <typename scalar_t>
inline void pass_row_values(scalar_t* row, int64_t f_begin, int64_t width, scalar_t error,
                            scalar_t* sum, const scalar_t* local, int64_t local_stride,
                            const scalar_t* features, int64_t features_stride, int64_t steps) {
  for (int64_t f = f_begin; f < width; ++f) {
    scalar_t value = row[f];
    if (sum != nullptr) {
      sum[f] += error * value;
    }
    for (int64_t t = 0; t < steps; ++t) {
      value += local[t * local_stride] * features[t * features_stride + f];
    }
    row[f] = value;
  }
}

// One row of a trace (width features): sum += error * row; row += sum_t local_t * features_t.
template <typename scalar_t>
inline void pass_row(scalar_t* row, int64_t width, scalar_t error, scalar_t* sum,
                     const scalar_t* local, int64_t local_stride, const scalar_t* features,
                     int64_t features_stride, int64_t steps) {
  using Vec = at::vec::Vectorized<scalar_t>;
  constexpr int64_t L = Vec::size();
  int64_t f = 0;
  for (; f + L <= width; f += L) {
    Vec value = Vec::loadu(row + f);
    if (sum != nullptr) {
      at::vec::fmadd(Vec(error), value, Vec::loadu(sum + f)).store(sum + f);
    }
    for (int64_t t = 0; t < steps; ++t) {
      value = at::vec::fmadd(Vec(local[t * local_stride]),
                             Vec::loadu(features + t * features_stride + f), value);
    }
    value.store(row + f);
  }
  pass_row_values(row, f, width, error, sum, local, local_stride, features, features_stride,
                  steps);
}

// kBlockRows trace rows of one batch row (the same features), pass_row on each: a chunk of T
// steps adds T products to every value, and with a row at a time each of them loaded a feature
// vector for one multiply-add, every multiply-add waiting on the one before (a chain of T per
// vector). A block takes kBlockVectors vectors of kBlockRows rows at a time: each feature vector
// loaded serves kBlockRows rows, and kBlockRows * kBlockVectors chains run side by side (16
// accumulators, as many as AVX-512's 32 registers keep with the features beside them; AVX2's 16
// spill some). Every value gets pass_row's operations in pass_row's order: the same bits.
constexpr int kBlockRows = 4;
constexpr int kBlockVectors = 4;

template <typename scalar_t>
struct RowBlock {
  scalar_t* rows[kBlockRows];
  scalar_t errors[kBlockRows];
  scalar_t* sums[kBlockRows];  // all null without sums
  const scalar_t* local[kBlockRows];
};

template <typename scalar_t, int kVectors>
C10_ALWAYS_INLINE void pass_block_vectors(const RowBlock<scalar_t>& block, int64_t f,
                                          int64_t local_stride, const scalar_t* features,
                                          int64_t features_stride, int64_t steps) {
  using Vec = at::vec::Vectorized<scalar_t>;
  constexpr int64_t L = Vec::size();
  Vec value[kBlockRows][kVectors];
  for (int j = 0; j < kBlockRows; ++j) {
    for (int v = 0; v < kVectors; ++v) {
      value[j][v] = Vec::loadu(block.rows[j] + f + v * L);
    }
  }
  if (block.sums[0] != nullptr) {
    for (int j = 0; j < kBlockRows; ++j) {
      for (int v = 0; v < kVectors; ++v) {
        scalar_t* sum = block.sums[j] + f + v * L;
        at::vec::fmadd(Vec(block.errors[j]), value[j][v], Vec::loadu(sum)).store(sum);
      }
    }
  }
  for (int64_t t = 0; t < steps; ++t) {
    Vec feature[kVectors];
    for (int v = 0; v < kVectors; ++v) {
      feature[v] = Vec::loadu(features + t * features_stride + f + v * L);
    }
    for (int j = 0; j < kBlockRows; ++j) {
      const Vec local(block.local[j][t * local_stride]);
      for (int v = 0; v < kVectors; ++v) {
        value[j][v] = at::vec::fmadd(local, feature[v], value[j][v]);
      }
    }
  }
  for (int j = 0; j < kBlockRows; ++j) {
    for (int v = 0; v < kVectors; ++v) {
      value[j][v].store(block.rows[j] + f + v * L);
    }
  }
}

template <typename scalar_t>
void pass_row_block(const RowBlock<scalar_t>& block, int64_t width, int64_t local_stride,
                    const scalar_t* features, int64_t features_stride, int64_t steps) {
  using Vec = at::vec::Vectorized<scalar_t>;
  constexpr int64_t L = Vec::size();
  const int64_t vectors = width / L;
  int64_t f = 0;
  for (; f + kBlockVectors * L <= vectors * L; f += kBlockVectors * L) {
    pass_block_vectors<scalar_t, kBlockVectors>(block, f, local_stride, features,
                                                features_stride, steps);
  }
  switch (vectors - f / L) {
    case 3:
      pass_block_vectors<scalar_t, 3>(block, f, local_stride, features, features_stride, steps);
      break;
    case 2:
      pass_block_vectors<scalar_t, 2>(block, f, local_stride, features, features_stride, steps);
      break;
    case 1:
      pass_block_vectors<scalar_t, 1>(block, f, local_stride, features, features_stride, steps);
      break;
    default:
      break;
  }
  for (int j = 0; j < kBlockRows; ++j) {
    pass_row_values(block.rows[j], vectors * L, width, block.errors[j], block.sums[j],
                    block.local[j], local_stride, features, features_stride, steps);
  }
}
static_assert(kBlockVectors == 4, "pass_row_block's switch covers 1 to 3 leftover vectors");

// The {batch row, gate row} strides of trace_ih, trace_hh and trace_bias.
using TraceStrides = std::array<std::array<int64_t, 2>, 3>;

TraceStrides trace_strides(const at::Tensor& trace_ih, const at::Tensor& trace_hh,
                           const at::Tensor& trace_bias) {
  return {{{trace_ih.stride(0), trace_ih.stride(1)},
           {trace_hh.stride(0), trace_hh.stride(1)},
           {trace_bias.stride(0), trace_bias.stride(1)}}};
}

// The trace pass on raw rows: traces (B, 2H, width) laid out as online_kernel_layout takes them
// (kernels.h; row r of batch row b at b * batch_stride + r * row_stride), errors (B, 2H) or null,
// sums (2H, width) or null, local (T, B, 2H), features (T, B, width) with T = `steps` (0: no
// update).
template <typename scalar_t>
struct TraceRows {
  int64_t B, traced, I, R, steps;
  scalar_t *trace_ih, *trace_hh, *trace_bias;
  TraceStrides strides;
  const scalar_t* error;
  scalar_t *sum_ih, *sum_hh, *sum_bias;
  const scalar_t *local, *input, *previous;
};

template <typename scalar_t>
void pass_trace_rows(const TraceRows<scalar_t>& rows) {
  const int64_t B = rows.B, traced = rows.traced, I = rows.I, R = rows.R, T = rows.steps;
  const bool sums = rows.error != nullptr;
  const scalar_t one(1);
  const int64_t grain = row_grain(B * (I + R + 1));
  const auto row = [&](scalar_t* trace, int group, int64_t b, int64_t r) {
    return trace + b * rows.strides[group][0] + r * rows.strides[group][1];
  };
  // Row r of batch row b: its carried error (zero without sums), its local terms local[t, b, r]
  // for t = 0, 1, ... (stride B * traced) and its biases' value, the same for a row alone and in
  // a block.
  const int64_t local_stride = B * traced;
  const auto error_of = [&](int64_t b, int64_t r) {
    return sums ? rows.error[b * traced + r] : scalar_t(0);
  };
  const auto local_of = [&](int64_t b, int64_t r) {
    return T > 0 ? rows.local + b * traced + r : nullptr;
  };
  const auto pass_bias = [&](int64_t b, int64_t r) {
    pass_row(row(rows.trace_bias, 2, b, r), 1, error_of(b, r), sums ? rows.sum_bias + r : nullptr,
             local_of(b, r), local_stride, &one, 0, T);
  };
  const auto pass_rows = [&](int64_t b, int64_t r) {
    const scalar_t e = error_of(b, r);
    const scalar_t* row_local = local_of(b, r);
    pass_row(row(rows.trace_ih, 0, b, r), I, e, sums ? rows.sum_ih + r * I : nullptr, row_local,
             local_stride, T > 0 ? rows.input + b * I : nullptr, B * I, T);
    pass_row(row(rows.trace_hh, 1, b, r), R, e, sums ? rows.sum_hh + r * R : nullptr, row_local,
             local_stride, T > 0 ? rows.previous + b * R : nullptr, B * R, T);
    pass_bias(b, r);
  };
  // kBlockRows rows r0 .. of batch row b at once (pass_row_block), for chunks of two steps or
  // more, whose products outweigh the memory traffic.
  const auto pass_block = [&](int64_t b, int64_t r0) {
    RowBlock<scalar_t> block;
    const auto fill = [&](scalar_t* trace, int group, scalar_t* sum, int64_t width) {
      for (int j = 0; j < kBlockRows; ++j) {
        const int64_t r = r0 + j;
        block.rows[j] = row(trace, group, b, r);
        block.errors[j] = error_of(b, r);
        block.sums[j] = sums ? sum + r * width : nullptr;
        block.local[j] = local_of(b, r);
      }
    };
    fill(rows.trace_ih, 0, rows.sum_ih, I);
    pass_row_block(block, I, local_stride, rows.input + b * I, B * I, T);
    fill(rows.trace_hh, 1, rows.sum_hh, R);
    pass_row_block(block, R, local_stride, rows.previous + b * R, B * R, T);
    for (int64_t r = r0; r < r0 + kBlockRows; ++r) {
      pass_bias(b, r);
    }
  };
  const bool blocks = T >= 2;
  // Rows r_begin .. r_end of batch row b: in blocks when they are taken, the rest one by one.
  const auto pass_batch_row = [&](int64_t b, int64_t r_begin, int64_t r_end) {
    int64_t r = r_begin;
    if (blocks) {
      for (; r + kBlockRows <= r_end; r += kBlockRows) {
        pass_block(b, r);
      }
    }
    for (; r < r_end; ++r) {
      pass_rows(b, r);
    }
  };
  // Rows are visited in the order they lie in memory, read as one stretch: gate row by gate row
  // (a block's rows side by side), each row's batch rows in turn; or, with the traces batch row
  // by batch row, in blocks of rows, each block batch row by batch row (reading one row per batch
  // row would jump a whole batch row's trace each time), the block's gradient sums staying in L1
  // while every batch row adds to them. Either way each sum adds the batch rows in order, so the
  // layouts give the same bits.
  const bool gate_rows_outer = B > 1 && rows.strides[0][1] > rows.strides[0][0];
  constexpr int64_t kRowsPerBlock = 16;
  at::parallel_for(0, traced, grain, [&](int64_t r_begin, int64_t r_end) {
    const int64_t step = gate_rows_outer ? (blocks ? kBlockRows : 1) : kRowsPerBlock;
    for (int64_t first = r_begin; first < r_end; first += step) {
      const int64_t last = std::min(r_end, first + step);
      for (int64_t b = 0; b < B; ++b) {
        pass_batch_row(b, first, last);
      }
    }
  });
}

template <typename scalar_t>
void trace_pass_typed(TracePass& pass) {
  const int64_t T = pass.advance ? pass.local.size(0) : 0;
  const bool sums = pass.carried_error.defined();
  const auto data = [](const at::Tensor& tensor, bool wanted) {
    return wanted ? tensor.data_ptr<scalar_t>() : nullptr;
  };
  pass_trace_rows<scalar_t>(TraceRows<scalar_t>{
      pass.trace_ih.size(0), pass.trace_ih.size(1), pass.trace_ih.size(2), pass.trace_hh.size(2),
      T, pass.trace_ih.data_ptr<scalar_t>(), pass.trace_hh.data_ptr<scalar_t>(),
      pass.trace_bias.data_ptr<scalar_t>(),
      trace_strides(pass.trace_ih, pass.trace_hh, pass.trace_bias),
      data(pass.carried_error, sums), data(pass.grad_traced_ih, sums),
      data(pass.grad_traced_hh, sums),
      data(pass.grad_traced_bias, sums), data(pass.local, T > 0), data(pass.input, T > 0),
      data(pass.previous, T > 0)});
}

// One step (T = 1) with a gradient: the paper's case, an update after every step. With grad_h_n
// and grad_s_n zero, the step's truncated backward is local to each row, so the whole op is three
// loops with no ATen op between them: the net-input errors of every row (dnet (B, G), and ds, the
// error of s_0, per cell: the carried error of the traces), the weight gradients dnet^T [x | r_0
// | 1] (threads split the gate rows), and the trace pass.
template <typename scalar_t>
void single_step_typed(const BackwardArgs& args, const at::Tensor& trace_ih,
                       const at::Tensor& trace_hh, const at::Tensor& trace_bias, bool advance,
                       LayerGradients& gradients) {
  const LayerArgs& layer = args.layer;
  const int64_t B = layer.sizes.batch.expect_int(), I = layer.sizes.input_size.expect_int(),
                H = layer.sizes.hidden_size.expect_int(), G = layer.sizes.gate_rows.expect_int(),
                R = layer.sizes.recurrent_size.expect_int();
  const int64_t S = layer.options.cells_per_block, K = H / S;
  const auto g = cell_input_squash<scalar_t>(layer.options.activation);
  const auto h = cell_output_squash<scalar_t>(layer.options.activation);
  const at::Tensor grad_output = args.grad_output.contiguous(), input = layer.input.contiguous(),
                   squashed_state = args.saved.squashed_state.contiguous(),
                   gates = args.saved.gates.contiguous();
  const at::Tensor h0 = present(layer.h0) ? layer.h0->contiguous() : at::Tensor();
  const scalar_t* dh = grad_output.const_data_ptr<scalar_t>();
  const scalar_t* x = input.const_data_ptr<scalar_t>();
  const scalar_t* hs = squashed_state.const_data_ptr<scalar_t>();
  const scalar_t* gate = gates.const_data_ptr<scalar_t>();
  std::vector<scalar_t> previous(B * R, scalar_t(0));  // r_0
  if (h0.defined()) {
    std::copy(h0.const_data_ptr<scalar_t>(), h0.const_data_ptr<scalar_t>() + B * R,
              previous.begin());
  }
  // Per row: dnet (G), the carried error (2H: ds for the input-gate and the cell-input rows of
  // each cell) and the local terms of the trace update (2H).
  std::vector<scalar_t> net_error(B * G), carried(B * 2 * H), local(B * 2 * H);
  for (int64_t b = 0; b < B; ++b) {
    const scalar_t* row_gates = gate + b * kNumGates * H;
    scalar_t* row_error = net_error.data() + b * G;
    std::fill(row_error, row_error + G, scalar_t(0));
    for (int64_t j = 0; j < H; ++j) {
      const scalar_t i = row_gates[kInputGate * H + j], z = row_gates[kCellInput * H + j],
                     o = row_gates[kOutputGate * H + j], y = hs[b * H + j], d = dh[b * H + j];
      scalar_t ds = 0;  // no error arrives from later steps
      const NetErrors<scalar_t> errors = cell_backward(d, ds, i, z, o, y, g, h);
      row_error[j / S] += errors.input_gate;
      row_error[K + j] = errors.cell_input;
      row_error[K + H + j / S] += errors.output_gate;
      carried[b * 2 * H + j] = carried[b * 2 * H + H + j] = ds;
      // d s / d net of the traced rows (online.cpp's local_state_derivatives, for one row).
      local[b * 2 * H + j] = z * i * (1 - i);
      local[b * 2 * H + H + j] = i * g.grad_from_value(z);
    }
  }
  scalar_t* grad_ih = gradients.grad_weight_ih.data_ptr<scalar_t>();
  scalar_t* grad_hh = gradients.grad_weight_hh.data_ptr<scalar_t>();
  scalar_t* grad_bias = gradients.grad_bias.data_ptr<scalar_t>();
  at::parallel_for(0, G, row_grain(B * (I + R + 1)),
                   [&](int64_t k_begin, int64_t k_end) {
    for (int64_t k = k_begin; k < k_end; ++k) {
      for (int64_t b = 0; b < B; ++b) {
        const scalar_t e = net_error[b * G + k];
        add_scaled(grad_ih + k * I, e, x + b * I, I);
        add_scaled(grad_hh + k * R, e, previous.data() + b * R, R);
        grad_bias[k] += e;
      }
    }
  });
  // The steps before: sum_b carried[b, r] trace[b, r, :], per cell, then into the gate rows.
  std::vector<scalar_t> sums(2 * H * (I + R + 1), scalar_t(0));
  scalar_t* sum_ih = sums.data();
  scalar_t* sum_hh = sum_ih + 2 * H * I;
  scalar_t* sum_bias = sum_hh + 2 * H * R;
  pass_trace_rows<scalar_t>(TraceRows<scalar_t>{
      B, 2 * H, I, R, advance ? 1 : 0, trace_ih.data_ptr<scalar_t>(),
      trace_hh.data_ptr<scalar_t>(), trace_bias.data_ptr<scalar_t>(),
      trace_strides(trace_ih, trace_hh, trace_bias), carried.data(), sum_ih,
      sum_hh, sum_bias, local.data(), x, previous.data()});
  for (int64_t r = 0; r < 2 * H; ++r) {
    const int64_t k = r < H ? r / S : K + (r - H);  // the gate row of traced row r
    for (int64_t c = 0; c < I; ++c) {
      grad_ih[k * I + c] += sum_ih[r * I + c];
    }
    for (int64_t c = 0; c < R; ++c) {
      grad_hh[k * R + c] += sum_hh[r * R + c];
    }
    grad_bias[k] += sum_bias[r];
  }
}

}  // namespace

void online_trace_pass(TracePass& pass) {
  const at::ScalarType dtype = pass.trace_ih.scalar_type();
  if ((dtype != at::kFloat && dtype != at::kDouble) ||
      !online_kernel_layout(pass.trace_ih, pass.trace_hh, pass.trace_bias)) {
    // (A trace of another layout, e.g. a strided view, is updated through ATen's in-place ops.)
    return online_aten_trace_pass(pass);
  }
  AT_DISPATCH_FLOATING_TYPES(dtype, "lstm1997_online_trace_pass_cpu",
                             [&] { trace_pass_typed<scalar_t>(pass); });
}

}  // namespace cpu
}  // namespace lstm1997

namespace lstm1997 {
namespace {

// Under LSTM1997_GENERIC=1 the CPU runs the ATen pass too (the generic implementation's).
void cpu_or_generic_trace_pass(TracePass& pass) {
  if (generic::forced_on_cpu()) {
    return online_aten_trace_pass(pass);
  }
  cpu::online_trace_pass(pass);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_online_step_cpu(
    const at::Tensor& trace_ih, const at::Tensor& trace_hh, const at::Tensor& trace_bias,
    const std::optional<at::Tensor>& grad_output, const at::Tensor& input,
    const at::Tensor& weight_ih, const at::Tensor& weight_hh, const std::optional<at::Tensor>& h0,
    const at::Tensor& output, const at::Tensor& squashed_state, const at::Tensor& gates,
    c10::string_view activation, int64_t cells_per_block, bool gate_feedback, bool advance) {
  const at::ScalarType dtype = input.scalar_type();
  const bool single_step = present(grad_output) && input.dim() == 3 && input.size(0) == 1 &&
                           (dtype == at::kFloat || dtype == at::kDouble) &&
                           cpu::online_kernel_layout(trace_ih, trace_hh, trace_bias) &&
                           !generic::forced_on_cpu();
  if (!single_step) {
    return online_step_kernel<&cpu_or_generic_trace_pass>(
        trace_ih, trace_hh, trace_bias, grad_output, input, weight_ih, weight_hh, h0, output,
        squashed_state, gates, activation, cells_per_block, gate_feedback, advance);
  }
  check_online_args(input, h0, output, gates, trace_ih, trace_hh, trace_bias, cells_per_block,
                    gate_feedback);
  // The same checks as the backward of the general path (with no error arriving from later).
  const at::Tensor no_error = at::zeros({input.size(1), output.size(2)}, output.options());
  const at::Tensor no_recurrent_error =
      at::zeros({input.size(1), weight_hh.dim() == 2 ? weight_hh.size(1) : 0}, output.options());
  const BackwardArgs args = check_backward_args(
      *grad_output, no_recurrent_error, no_error, input, weight_ih, weight_hh, h0, output,
      squashed_state, gates, /*truncate=*/true, activation, std::nullopt,
      {false, true, true, true}, cells_per_block, gate_feedback);
  LayerGradients gradients;
  gradients.grad_weight_ih = at::zeros(weight_ih.sizes(), output.options());
  gradients.grad_weight_hh = at::zeros(weight_hh.sizes(), output.options());
  gradients.grad_bias = at::zeros({weight_hh.size(0)}, output.options());
  AT_DISPATCH_FLOATING_TYPES(dtype, "lstm1997_online_single_step_cpu", [&] {
    cpu::single_step_typed<scalar_t>(args, trace_ih, trace_hh, trace_bias, advance, gradients);
  });
  return {gradients.grad_weight_ih, gradients.grad_weight_hh, gradients.grad_bias};
}

TORCH_LIBRARY_IMPL(lstm1997, CPU, m) {
  m.impl("lstm_online_step_", &lstm_online_step_cpu);
}

}  // namespace lstm1997
