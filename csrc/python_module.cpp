// lstm1997._C: importing it runs the static TORCH_LIBRARY registrations. The library itself needs
// no Python (the C++ build links the other sources only).
//
// It also binds the two ops of OnlineLSTM's one-step path (_lstm_online_forward_ and
// _lstm_online_update_) for Python, as torch binds ATen's ops: a torch.ops call matches its
// arguments against the schema and boxes them, which for these ops' eleven tensors costs several
// times a small step's arithmetic (benchmarks/bench.py, online table). The bindings call the same
// ops through the dispatcher, with grad mode off: the ops advance state in place and are not
// differentiable, which torch.ops callers say with torch.no_grad().
#include <torch/extension.h>

#include <ATen/core/dispatch/Dispatcher.h>

#include <optional>
#include <string>

namespace {

using OptionalTensor = std::optional<at::Tensor>;

at::Tensor online_forward(const at::Tensor& hidden, const at::Tensor& cell_state,
                          const at::Tensor& step_input, const at::Tensor& previous,
                          const at::Tensor& squashed_state, const at::Tensor& gates,
                          const at::Tensor& input, const at::Tensor& weight_ih,
                          const at::Tensor& weight_hh, const OptionalTensor& bias_ih,
                          const OptionalTensor& bias_hh, const std::string& activation,
                          int64_t cells_per_block, bool gate_feedback) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("lstm1997::_lstm_online_forward_", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                            const at::Tensor&, const at::Tensor&, const at::Tensor&,
                            const at::Tensor&, const at::Tensor&, const at::Tensor&,
                            const OptionalTensor&, const OptionalTensor&, c10::string_view,
                            int64_t, bool)>();
  at::NoGradGuard no_grad;
  return op.call(hidden, cell_state, step_input, previous, squashed_state, gates, input,
                 weight_ih, weight_hh, bias_ih, bias_hh, activation, cells_per_block,
                 gate_feedback);
}

void online_update(const at::Tensor& trace_ih, const at::Tensor& trace_hh,
                   const at::Tensor& trace_bias, const at::Tensor& target_weight_ih,
                   const at::Tensor& target_weight_hh, const at::Tensor& target_bias_ih,
                   const at::Tensor& target_bias_hh,
                   const OptionalTensor& grad_output, const at::Tensor& step_input,
                   const at::Tensor& previous, const at::Tensor& squashed_state,
                   const at::Tensor& gates, double alpha, const std::string& activation,
                   int64_t cells_per_block, bool gate_feedback) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("lstm1997::_lstm_online_update_", "")
          .typed<void(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                      const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                      const OptionalTensor&, const at::Tensor&, const at::Tensor&,
                      const at::Tensor&, const at::Tensor&, double, c10::string_view, int64_t,
                      bool)>();
  at::NoGradGuard no_grad;
  op.call(trace_ih, trace_hh, trace_bias, target_weight_ih, target_weight_hh, target_bias_ih,
          target_bias_hh, grad_output, step_input, previous,
          squashed_state, gates, alpha, activation, cells_per_block, gate_feedback);
}

}  // namespace

PYBIND11_MODULE(_C, module) {
  module.def("_online_forward", &online_forward,
             "torch.ops.lstm1997._lstm_online_forward_ (positional arguments), under no_grad");
  module.def("_online_update", &online_update,
             "torch.ops.lstm1997._lstm_online_update_ (positional arguments), under no_grad");
}
