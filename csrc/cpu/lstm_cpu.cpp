// CPU kernels of the 1997 LSTM layer: forward, truncated backward and exact backward.
//
// The big matrix products (input projection, weight gradients, input gradient) run once over all
// T*B rows outside the time loop. Inside it, the forward does one recurrent GEMM per step; the
// truncated backward does none (a reverse scan over time), the exact backward one per step.
#include "../lstm1997.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

namespace lstm1997 {
namespace {

// Enough elements per task that at::parallel_for's overhead stays small.
constexpr int64_t kElementsPerTask = 16384;

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

// One time step of the cell. `gates` holds the net inputs on entry and the activated gates on
// exit, so the backward pass reads them back without recomputing them.
template <typename scalar_t>
void forward_step(scalar_t* gates, const scalar_t* prev_cell_state, scalar_t* cell_state,
                  scalar_t* hidden, int64_t batch, int64_t hidden_size, Squash<scalar_t> g,
                  Squash<scalar_t> h) {
  const int64_t H = hidden_size;
  at::parallel_for(0, batch * H, kElementsPerTask, [&](int64_t begin, int64_t end) {
    for_each_row_piece(begin, end, H, [&](int64_t b, int64_t j_begin, int64_t j_end) {
      scalar_t* input_gate = gates + b * kNumGateBlocks * H;
      scalar_t* cell_input = input_gate + kCellInput * H;
      scalar_t* output_gate = input_gate + kOutputGate * H;
      const int64_t row = b * H;
      for (int64_t j = j_begin; j < j_end; ++j) {
        const scalar_t i = sigmoid(input_gate[j]);
        const scalar_t gz = g(cell_input[j]);
        const scalar_t o = sigmoid(output_gate[j]);
        const scalar_t s = prev_cell_state[row + j] + i * gz;
        input_gate[j] = i;
        cell_input[j] = gz;
        output_gate[j] = o;
        cell_state[row + j] = s;
        hidden[row + j] = o * h(s);
      }
    });
  });
}

// Error of one cell at one step, shared by both backward modes. `dh` is the error reaching h_t;
// `ds` enters as the error on s_t from step t+1 and leaves as the error on s_t (and so on s_{t-1}:
// the carousel passes it on unchanged). Writes the error of the three net inputs to `dnet`.
template <typename scalar_t>
inline void backward_cell(scalar_t dh, scalar_t& ds, const scalar_t* gates, scalar_t s,
                          scalar_t* dnet, int64_t j, int64_t hidden_size, Squash<scalar_t> g,
                          Squash<scalar_t> h) {
  const scalar_t i = gates[j];
  const scalar_t gz = gates[kCellInput * hidden_size + j];
  const scalar_t o = gates[kOutputGate * hidden_size + j];
  const scalar_t hs = h(s);
  dnet[kOutputGate * hidden_size + j] = dh * hs * o * (scalar_t(1) - o);
  ds += dh * o * h.grad_from_value(hs);
  dnet[kInputGate * hidden_size + j] = ds * gz * i * (scalar_t(1) - i);
  dnet[kCellInput * hidden_size + j] = ds * i * g.grad_from_value(gz);
}

ForwardResult lstm_forward_cpu(const at::Tensor& input, const at::Tensor& weight_ih,
                               const at::Tensor& weight_hh,
                               const std::optional<at::Tensor>& bias_ih,
                               const std::optional<at::Tensor>& bias_hh,
                               const std::optional<at::Tensor>& h0,
                               const std::optional<at::Tensor>& s0,
                               c10::string_view activation_name) {
  const LayerSizes sizes = check_forward_args(input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0);
  const Activation activation = parse_activation(activation_name);
  const int64_t T = sizes.seq_len.expect_int(), B = sizes.batch.expect_int(),
                I = sizes.input_size.expect_int(), H = sizes.hidden_size.expect_int();
  const auto options = input.options();

  // The input projection of every step in one GEMM, written straight into the gate buffer that
  // then receives the recurrent term, and finally the activated gates.
  at::Tensor gates = at::empty({T, B, kNumGateBlocks * H}, options);
  at::Tensor gates_2d = gates.view({T * B, kNumGateBlocks * H});
  const at::Tensor input_2d = input.reshape({T * B, I});
  const bool has_bias_ih = bias_ih.has_value() && bias_ih->defined();
  const bool has_bias_hh = bias_hh.has_value() && bias_hh->defined();
  if (has_bias_ih || has_bias_hh) {
    const at::Tensor bias = has_bias_ih && has_bias_hh ? *bias_ih + *bias_hh
                            : has_bias_ih              ? *bias_ih
                                                       : *bias_hh;
    at::addmm_out(gates_2d, bias, input_2d, weight_ih.t());
  } else {
    at::mm_out(gates_2d, input_2d, weight_ih.t());
  }

  at::Tensor output = at::empty({T, B, H}, options);
  at::Tensor cell_state = at::empty({T, B, H}, options);
  at::Tensor hidden = h0.has_value() && h0->defined() ? h0->contiguous() : at::zeros({B, H}, options);
  at::Tensor state = s0.has_value() && s0->defined() ? s0->contiguous() : at::zeros({B, H}, options);
  const at::Tensor weight_hh_t = weight_hh.t();

  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "lstm1997_forward_cpu", [&] {
    const auto g = cell_input_squash<scalar_t>(activation);
    const auto h = cell_output_squash<scalar_t>(activation);
    for (int64_t t = 0; t < T; ++t) {
      at::Tensor net = gates[t];
      net.addmm_(hidden, weight_hh_t);
      at::Tensor next_state = cell_state[t];
      at::Tensor next_hidden = output[t];
      forward_step<scalar_t>(net.data_ptr<scalar_t>(), state.const_data_ptr<scalar_t>(),
                             next_state.data_ptr<scalar_t>(), next_hidden.data_ptr<scalar_t>(), B,
                             H, g, h);
      hidden = next_hidden;
      state = next_state;
    }
  });
  // Fresh tensors, not views: an op's outputs must not alias each other.
  return {output, hidden.clone(), state.clone(), cell_state, gates};
}

// The error of every net input, dnet (T, B, 3H), and of s0, under the paper's truncation: dh_t is
// only the external error (no recurrent term), so ds is a reverse cumulative sum of local terms and
// every (b, j) cell runs through time independently of the others: no matrix product at all.
template <typename scalar_t>
void truncated_net_errors(const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                          const at::Tensor& grad_s_n, const at::Tensor& cell_state,
                          const at::Tensor& gates, at::Tensor& dnet, at::Tensor& grad_s0,
                          Activation activation) {
  const int64_t T = gates.size(0), B = gates.size(1), H = gates.size(2) / kNumGateBlocks;
  const auto g = cell_input_squash<scalar_t>(activation);
  const auto h = cell_output_squash<scalar_t>(activation);
  grad_s0.copy_(grad_s_n);  // carries ds backwards through time, ending as the error on s0
  scalar_t* ds = grad_s0.data_ptr<scalar_t>();
  const scalar_t* dh_ext = grad_output.const_data_ptr<scalar_t>();
  const scalar_t* dh_last = grad_h_n.const_data_ptr<scalar_t>();
  const scalar_t* s = cell_state.const_data_ptr<scalar_t>();
  const scalar_t* gate = gates.const_data_ptr<scalar_t>();
  scalar_t* dnet_ptr = dnet.data_ptr<scalar_t>();
  const int64_t step = B * H, gate_step = B * kNumGateBlocks * H;
  const int64_t grain = std::max<int64_t>(1, kElementsPerTask / std::max<int64_t>(1, T));

  at::parallel_for(0, B * H, grain, [&](int64_t begin, int64_t end) {
    for (int64_t t = T - 1; t >= 0; --t) {
      for_each_row_piece(begin, end, H, [&](int64_t b, int64_t j_begin, int64_t j_end) {
        const int64_t row = t * step + b * H;
        const int64_t gate_row = t * gate_step + b * kNumGateBlocks * H;
        for (int64_t j = j_begin; j < j_end; ++j) {
          // h_n is output[T-1]: its error joins the last step's.
          const scalar_t dh = dh_ext[row + j] + (t == T - 1 ? dh_last[b * H + j] : scalar_t(0));
          backward_cell(dh, ds[b * H + j], gate + gate_row, s[row + j], dnet_ptr + gate_row, j, H,
                        g, h);
        }
      });
    }
  });
}

// Exact BPTT: dh_t also receives dnet_{t+1} W_hh, one GEMM per step.
template <typename scalar_t>
void exact_net_errors(const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                      const at::Tensor& grad_s_n, const at::Tensor& weight_hh,
                      const at::Tensor& cell_state, const at::Tensor& gates, at::Tensor& dnet,
                      at::Tensor& grad_h0, at::Tensor& grad_s0, Activation activation) {
  const int64_t T = gates.size(0), B = gates.size(1), H = gates.size(2) / kNumGateBlocks;
  const auto g = cell_input_squash<scalar_t>(activation);
  const auto h = cell_output_squash<scalar_t>(activation);
  grad_h0.copy_(grad_h_n);  // holds dh_rec, the recurrent error reaching h_t from step t+1
  grad_s0.copy_(grad_s_n);  // holds ds, the error on s_t from step t+1
  scalar_t* dh_rec = grad_h0.data_ptr<scalar_t>();
  scalar_t* ds = grad_s0.data_ptr<scalar_t>();
  for (int64_t t = T - 1; t >= 0; --t) {
    const scalar_t* dh_ext = grad_output[t].const_data_ptr<scalar_t>();
    const scalar_t* s = cell_state[t].const_data_ptr<scalar_t>();
    const scalar_t* gate = gates[t].const_data_ptr<scalar_t>();
    at::Tensor dnet_t = dnet[t];
    scalar_t* dnet_ptr = dnet_t.data_ptr<scalar_t>();
    at::parallel_for(0, B * H, kElementsPerTask, [&](int64_t begin, int64_t end) {
      for_each_row_piece(begin, end, H, [&](int64_t b, int64_t j_begin, int64_t j_end) {
        const int64_t gate_row = b * kNumGateBlocks * H;
        for (int64_t j = j_begin; j < j_end; ++j) {
          const int64_t cell = b * H + j;
          backward_cell(dh_ext[cell] + dh_rec[cell], ds[cell], gate + gate_row, s[cell],
                        dnet_ptr + gate_row, j, H, g, h);
        }
      });
    });
    at::mm_out(grad_h0, dnet_t, weight_hh);
  }
}

BackwardResult lstm_backward_cpu(const at::Tensor& grad_output_in, const at::Tensor& grad_h_n_in,
                                 const at::Tensor& grad_s_n_in, const at::Tensor& input,
                                 const at::Tensor& weight_ih, const at::Tensor& weight_hh,
                                 const std::optional<at::Tensor>& h0, const at::Tensor& output,
                                 const at::Tensor& cell_state_in, const at::Tensor& gates_in,
                                 bool truncate, c10::string_view activation_name) {
  const LayerSizes sizes = check_backward_args(grad_output_in, grad_h_n_in, grad_s_n_in, input,
                                               weight_ih, weight_hh, h0, output, cell_state_in,
                                               gates_in);
  const Activation activation = parse_activation(activation_name);
  const int64_t T = sizes.seq_len.expect_int(), B = sizes.batch.expect_int(),
                I = sizes.input_size.expect_int(), H = sizes.hidden_size.expect_int();
  // Incoming gradients are often expanded (stride 0) views, e.g. from a sum().
  const at::Tensor grad_output = grad_output_in.contiguous();
  const at::Tensor grad_h_n = grad_h_n_in.contiguous();
  const at::Tensor grad_s_n = grad_s_n_in.contiguous();
  const at::Tensor cell_state = cell_state_in.contiguous();
  const at::Tensor gates = gates_in.contiguous();
  const auto options = input.options();

  at::Tensor dnet = at::empty({T, B, kNumGateBlocks * H}, options);
  at::Tensor grad_h0 = at::empty({B, H}, options);
  at::Tensor grad_s0 = at::empty({B, H}, options);
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "lstm1997_backward_cpu", [&] {
    if (truncate) {
      truncated_net_errors<scalar_t>(grad_output, grad_h_n, grad_s_n, cell_state, gates, dnet,
                                     grad_s0, activation);
      // h0 reaches the cell only through the truncated recurrent product, except for an empty
      // sequence, where h_n is h0 itself.
      if (T == 0) {
        grad_h0.copy_(grad_h_n);
      } else {
        grad_h0.zero_();
      }
    } else {
      exact_net_errors<scalar_t>(grad_output, grad_h_n, grad_s_n, weight_hh, cell_state, gates,
                                 dnet, grad_h0, grad_s0, activation);
    }
  });

  // Weight and input gradients: large GEMMs over all T*B rows at once.
  const at::Tensor dnet_2d = dnet.view({T * B, kNumGateBlocks * H});
  const at::Tensor grad_weight_ih = at::mm(dnet_2d.t(), input.reshape({T * B, I}));
  at::Tensor grad_weight_hh = at::zeros({kNumGateBlocks * H, H}, options);
  if (T > 0 && h0.has_value() && h0->defined()) {
    grad_weight_hh.addmm_(dnet[0].t(), *h0);
  }
  if (T > 1) {
    // h_{t-1} for t >= 1 is the forward output shifted by one step.
    grad_weight_hh.addmm_(dnet_2d.slice(0, B).t(), output.slice(0, 0, T - 1).reshape({(T - 1) * B, H}));
  }
  const at::Tensor grad_bias = dnet_2d.sum(0);
  const at::Tensor grad_input = at::mm(dnet_2d, weight_ih).view({T, B, I});
  return {grad_input, grad_weight_ih, grad_weight_hh, grad_bias, grad_h0, grad_s0};
}

}  // namespace

TORCH_LIBRARY_IMPL(lstm1997, CPU, m) {
  m.impl("lstm_forward", &lstm_forward_cpu);
  m.impl("lstm_backward", &lstm_backward_cpu);
}

}  // namespace lstm1997
