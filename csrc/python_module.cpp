// lstm1997._C: importing it runs the static TORCH_LIBRARY registrations. The library itself needs
// no Python (the C++ build links the other sources only).
//
// It also binds the two ops of OnlineLSTM's one-step path (_lstm_online_forward_ and
// _lstm_online_update_) for Python, as torch binds ATen's ops: a torch.ops call matches its
// arguments against the schema and boxes them, which for these ops' eleven tensors costs several
// times a small step's arithmetic (benchmarks/bench.py, online table). OnlineStepper, bound to one
// stream, calls the same ops through the dispatcher, with grad mode off: the ops advance state in
// place and are not differentiable, which torch.ops callers say with torch.no_grad(). It also does
// the module's own bookkeeping around the ops (checks, the returned leaf, the gradients' targets).
#include <torch/extension.h>

#include <ATen/core/dispatch/Dispatcher.h>

#include <optional>
#include <string>
#include <tuple>

namespace {

using OptionalTensor = std::optional<at::Tensor>;

// The empty target of _lstm_online_update_ that leaves a parameter alone (its dtype is not
// read): made once, when the module is imported (outside any mode a later call may run under),
// and never freed.
at::Tensor& left_alone() {
  static at::Tensor* const empty = new at::Tensor();
  return *empty;
}

// _lstm_online_update_; a target given as None is left alone.
void online_update(const at::Tensor& trace_ih, const at::Tensor& trace_hh,
                   const at::Tensor& trace_bias, const OptionalTensor& target_weight_ih,
                   const OptionalTensor& target_weight_hh, const OptionalTensor& target_bias_ih,
                   const OptionalTensor& target_bias_hh,
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
  const auto target = [](const OptionalTensor& tensor) -> const at::Tensor& {
    return tensor ? *tensor : left_alone();
  };
  op.call(trace_ih, trace_hh, trace_bias, target(target_weight_ih), target(target_weight_hh),
          target(target_bias_ih), target(target_bias_hh), grad_output, step_input, previous,
          squashed_state, gates, alpha, activation, cells_per_block, gate_feedback);
}

// OnlineLSTM's one-step forward: the op on the stream's state and buffers, and what the module
// did around it in Python (measured: each of a tensor's Python properties, shape, dtype, grad,
// costs about as much as a small step's arithmetic): the stream's batch size checked, a
// batch-first chunk of one taken as its step, and the returned output made a leaf that requires
// grad when grad mode is on, so that a caller's loss graph ends there. Returns the op's output and
// the output returned to the caller.
std::tuple<at::Tensor, at::Tensor> online_forward(
    const at::Tensor& hidden, const at::Tensor& cell_state, const at::Tensor& step_input,
    const at::Tensor& previous, const at::Tensor& squashed_state, const at::Tensor& gates,
    const at::Tensor& input, const at::Tensor& weight_ih, const at::Tensor& weight_hh,
    const OptionalTensor& bias_ih, const OptionalTensor& bias_hh, const std::string& activation,
    int64_t cells_per_block, bool gate_feedback, bool batch_first_chunk) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("lstm1997::_lstm_online_forward_", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                            const at::Tensor&, const at::Tensor&, const at::Tensor&,
                            const at::Tensor&, const at::Tensor&, const at::Tensor&,
                            const OptionalTensor&, const OptionalTensor&, c10::string_view,
                            int64_t, bool)>();
  const at::Tensor step = batch_first_chunk ? input.select(1, 0) : input;
  TORCH_CHECK(hidden.size(0) == step.size(-2), "OnlineLSTM: input: expected batch size ",
              hidden.size(0), " (the stream's, until reset()), got ", step.size(-2));
  at::Tensor output;
  {
    at::NoGradGuard no_grad;
    output = op.call(hidden, cell_state, step_input, previous, squashed_state, gates, step,
                     weight_ih, weight_hh, bias_ih, bias_hh, activation, cells_per_block,
                     gate_feedback);
  }
  // The view and the leaf made in the caller's grad mode, as the module's Python made them.
  // (The stream keeps the returned tensor: backward() expects a grad_output of its shape.)
  at::Tensor returned = batch_first_chunk ? output.unsqueeze(1) : output;
  if (at::GradMode::is_enabled()) {
    returned.set_requires_grad(true);
  }
  return {output, returned};
}

// OnlineLSTM's backward() or update() after a one-step call: grad_output checked against the
// output returned, and _lstm_online_update_ with every parameter that requires grad as a target:
// its .grad (made zeros where there is none) with into_grad, else the parameter itself. (The
// module's Python did this before, at several times the cost of the update's arithmetic at the
// paper's sizes.)
void online_step_update(const at::Tensor& trace_ih, const at::Tensor& trace_hh,
                        const at::Tensor& trace_bias, const at::Tensor& weight_ih,
                        const at::Tensor& weight_hh, const OptionalTensor& bias_ih,
                        const OptionalTensor& bias_hh, const at::Tensor& grad_output,
                        const at::Tensor& returned, const at::Tensor& step_output,
                        const at::Tensor& step_input, const at::Tensor& previous,
                        const at::Tensor& squashed_state, const at::Tensor& gates, double alpha,
                        bool into_grad, const std::string& activation, int64_t cells_per_block,
                        bool gate_feedback) {
  TORCH_CHECK(grad_output.sizes() == returned.sizes(), "OnlineLSTM: grad_output: expected shape ",
              returned.sizes(), " (that of the last output), got ", grad_output.sizes());
  at::NoGradGuard no_grad;
  at::Tensor grad = grad_output;
  if (grad.dim() != step_output.dim()) {  // a batch-first chunk of one
    grad = grad.view(step_output.sizes());
  }
  if (grad.scalar_type() != step_output.scalar_type()) {
    grad = grad.to(step_output.scalar_type());
  }
  const auto target = [&](const at::Tensor* parameter) -> OptionalTensor {
    if (parameter == nullptr || !parameter->defined() || !parameter->requires_grad()) {
      return std::nullopt;  // left alone
    }
    if (!into_grad) {
      return *parameter;
    }
    at::Tensor& parameter_grad = parameter->mutable_grad();
    if (!parameter_grad.defined()) {
      parameter_grad = at::zeros_like(*parameter);
    }
    return parameter_grad;
  };
  online_update(trace_ih, trace_hh, trace_bias, target(&weight_ih), target(&weight_hh),
                target(bias_ih ? &*bias_ih : nullptr), target(bias_hh ? &*bias_hh : nullptr),
                grad, step_input, previous, squashed_state, gates, alpha, activation,
                cells_per_block, gate_feedback);
}

// Whether OnlineLSTM's input is a step of its one-step path: on the CPU, (B, I), or a chunk of
// one, (1, B, I) or with batch_first (B, 1, I). (The module asks it, as OnlineStepper::forward
// does, before a stream has a stepper.)
bool is_online_step(const at::Tensor& input, bool batch_first) {
  const int64_t dim = input.dim();
  return input.is_cpu() && (dim == 2 || (dim == 3 && input.size(batch_first ? 1 : 0) == 1));
}

// OnlineLSTM's one-step path bound to one stream: the stream's state (h, s), the step's buffers,
// the traces and the layer's options, and the last step's outputs, so that a step's two calls pass
// its input, grad_output and the parameters only. (Converting arguments is a binding's largest
// fixed cost at the paper's sizes: the stream's fourteen tensors and the option string cost a call
// about what the forward op itself did; benchmarks/README.md, "a stream bound once".) The module
// keeps the same tensors itself, and binds a new stepper whenever it replaces them (a chunk call,
// reset(), a copy of the module).
class OnlineStepper {
 public:
  OnlineStepper(at::Tensor hidden, at::Tensor cell_state, at::Tensor step_input, at::Tensor previous,
                at::Tensor squashed_state, at::Tensor gates, at::Tensor trace_ih,
                at::Tensor trace_hh, at::Tensor trace_bias, std::string activation,
                int64_t cells_per_block, bool gate_feedback, OptionalTensor step_output,
                OptionalTensor returned)
      : hidden_(std::move(hidden)),
        cell_state_(std::move(cell_state)),
        step_input_(std::move(step_input)),
        previous_(std::move(previous)),
        squashed_state_(std::move(squashed_state)),
        gates_(std::move(gates)),
        trace_ih_(std::move(trace_ih)),
        trace_hh_(std::move(trace_hh)),
        trace_bias_(std::move(trace_bias)),
        activation_(std::move(activation)),
        cells_per_block_(cells_per_block),
        gate_feedback_(gate_feedback),
        step_output_(step_output.value_or(at::Tensor())),
        returned_(returned.value_or(at::Tensor())) {}

  // online_forward on the stream for a step (is_online_step); returns (the op's output, the
  // output returned to the caller), or None for any other input, which the module's chunk path
  // takes. (The module's Python made the same choice from the input's device, dim and shape, at
  // about a tenth of a small step's time.)
  std::optional<std::tuple<at::Tensor, at::Tensor>> forward(const at::Tensor& input,
                                                            const at::Tensor& weight_ih,
                                                            const at::Tensor& weight_hh,
                                                            const OptionalTensor& bias_ih,
                                                            const OptionalTensor& bias_hh,
                                                            bool batch_first) {
    if (!is_online_step(input, batch_first)) {
      return std::nullopt;
    }
    std::tie(step_output_, returned_) =
        online_forward(hidden_, cell_state_, step_input_, previous_, squashed_state_, gates_,
                       input, weight_ih, weight_hh, bias_ih, bias_hh, activation_,
                       cells_per_block_, gate_feedback_, input.dim() == 3 && batch_first);
    return std::make_tuple(step_output_, returned_);
  }

  // online_step_update after the last step (the module checks that one came).
  void update(const at::Tensor& grad_output, const at::Tensor& weight_ih,
              const at::Tensor& weight_hh, const OptionalTensor& bias_ih,
              const OptionalTensor& bias_hh, double alpha, bool into_grad) {
    TORCH_CHECK(step_output_.defined(), "OnlineLSTM: backward: expected a forward() call first");
    online_step_update(trace_ih_, trace_hh_, trace_bias_, weight_ih, weight_hh, bias_ih, bias_hh,
                       grad_output, returned_, step_output_, step_input_, previous_,
                       squashed_state_, gates_, alpha, into_grad, activation_, cells_per_block_,
                       gate_feedback_);
  }

  // The last step's terms into the traces, without a gradient.
  void advance() {
    online_update(trace_ih_, trace_hh_, trace_bias_, std::nullopt, std::nullopt, std::nullopt,
                  std::nullopt, std::nullopt, step_input_, previous_, squashed_state_, gates_, 0.0,
                  activation_, cells_per_block_, gate_feedback_);
  }

 private:
  at::Tensor hidden_, cell_state_, step_input_, previous_, squashed_state_, gates_;
  at::Tensor trace_ih_, trace_hh_, trace_bias_;
  std::string activation_;
  int64_t cells_per_block_;
  bool gate_feedback_;
  at::Tensor step_output_, returned_;
};

}  // namespace

PYBIND11_MODULE(_C, module) {
  left_alone() = at::empty({0});
  module.def("_is_online_step", &is_online_step,
             "whether OnlineLSTM's input is a step of its one-step path (python_module.cpp)");
  pybind11::class_<OnlineStepper>(module, "_OnlineStepper",
                                  "OnlineLSTM's one-step path bound to one stream "
                                  "(python_module.cpp)")
      .def(pybind11::init<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                          at::Tensor, at::Tensor, at::Tensor, std::string, int64_t, bool,
                          OptionalTensor, OptionalTensor>())
      .def("forward", &OnlineStepper::forward,
           "torch.ops.lstm1997._lstm_online_forward_ on the stream, under no_grad, for a step on "
           "the CPU: (output, the output returned), or None for any other input")
      .def("update", &OnlineStepper::update,
           "OnlineLSTM's backward() (into_grad) or update() after the last step")
      .def("advance", &OnlineStepper::advance,
           "the last step's terms into the traces, without a gradient");
}
