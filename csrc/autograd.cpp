// Differentiation of lstm1997::lstm in C++, so that Python, TorchScript and LibTorch programs all
// get the same gradients. The Function calls the _lstm_forward and _lstm_backward ops through the
// dispatcher, so every backend (and the meta kernels, for tracing) serves it. A backward with
// create_graph (double backward) instead differentiates the generic implementation's ATen ops.
// torch.func transforms never reach this Function (functorch refuses C++ Functions): they take
// python/lstm1997/_transforms.py's kernel, registered at FuncTorchDynamicLayerFrontMode.
#include "generic/kernels.h"
#include "layer_ops.h"

#include <torch/autograd.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/library.h>

#include <array>
#include <vector>

namespace lstm1997 {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::optional<at::Tensor> optional_tensor(const at::Tensor& tensor) {
  return tensor.defined() ? std::optional<at::Tensor>(tensor) : std::nullopt;
}

// The gradients of LstmFunction as a differentiable graph: the saved inputs run through the
// generic implementation under autograd, then autograd's gradient of its outputs with
// create_graph. Returned in LstmFunction's input order (undefined where no gradient is needed).
variable_list differentiable_gradients(AutogradContext* ctx, const variable_list& saved,
                                       const variable_list& grads) {
  LayerArgs args;
  args.input = saved[0];
  args.weight_ih = saved[1];
  args.weight_hh = saved[2];
  args.h0 = optional_tensor(saved[3]);
  args.batch_sizes = optional_tensor(saved[7]);
  args.bias_ih = optional_tensor(saved[8]);
  args.bias_hh = optional_tensor(saved[9]);
  args.s0 = optional_tensor(saved[10]);
  args.options = LayerOptions::from_ivalue(ctx->saved_data["options"]);
  check_layer_args(args);  // fills in the sizes
  const LayerOutputs outputs = generic::differentiable_lstm(args);
  // The inputs in LstmFunction's order, and which of them get a gradient.
  const std::array<at::Tensor, 7> inputs = {saved[0], saved[1], saved[2], saved[8],
                                            saved[9],  saved[3], saved[10]};
  variable_list wanted;
  std::vector<size_t> positions;
  size_t edge = 0;  // the graph has an edge for each input given (Function::apply's rule)
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].defined() && ctx->needs_input_grad(edge++)) {
      wanted.push_back(inputs[i]);
      positions.push_back(i);
    }
  }
  variable_list result(inputs.size() + 1);
  if (wanted.empty()) {
    return result;
  }
  const variable_list gradients = torch::autograd::grad(
      {outputs.output, outputs.h_n, outputs.s_n}, wanted, {grads[0], grads[1], grads[2]},
      /*retain_graph=*/true, /*create_graph=*/true, /*allow_unused=*/true);
  for (size_t k = 0; k < positions.size(); ++k) {
    const at::Tensor& gradient = gradients[k];
    result[positions[k]] = gradient.defined() ? gradient : at::zeros_like(wanted[k]);
  }
  // bias_ih and bias_hh enter as a sum, and may get one tensor: give each its own (see below).
  if (result[3].defined() && result[4].defined() && result[3].is_same(result[4])) {
    result[4] = result[4].clone();
  }
  return result;
}

class LstmFunction : public torch::autograd::Function<LstmFunction> {
 public:
  // The tensors are passed one by one, although `args` holds them too: Function::apply makes the
  // graph's edges from the tensor arguments it sees.
  static variable_list forward(AutogradContext* ctx, const at::Tensor& /*input*/,
                               const at::Tensor& /*weight_ih*/, const at::Tensor& /*weight_hh*/,
                               const std::optional<at::Tensor>& /*bias_ih*/,
                               const std::optional<at::Tensor>& /*bias_hh*/,
                               const std::optional<at::Tensor>& /*h0*/,
                               const std::optional<at::Tensor>& /*s0*/, const LayerArgs& args) {
    at::AutoDispatchBelowADInplaceOrView guard;
    const ForwardResult result = dispatch_forward(args);
    const SavedForward& saved = result.saved;
    ctx->save_for_backward({args.input, args.weight_ih, args.weight_hh,
                            args.h0.value_or(at::Tensor()), saved.output, saved.squashed_state,
                            saved.gates, args.batch_sizes.value_or(at::Tensor()),
                            args.bias_ih.value_or(at::Tensor()),
                            args.bias_hh.value_or(at::Tensor()), args.s0.value_or(at::Tensor())});
    ctx->saved_data["options"] = args.options.to_ivalue();
    ctx->saved_data["has_bias_ih"] = present(args.bias_ih);
    ctx->saved_data["has_bias_hh"] = present(args.bias_hh);
    ctx->saved_data["has_s0"] = present(args.s0);
    return {saved.output, result.h_n, result.s_n};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    if (torch::autograd::GradMode::is_enabled()) {
      // backward(create_graph=True): the gradient must itself be differentiable (double backward:
      // gradient penalties, MAML, Hessian-vector products). The fast kernels' backward is not, so
      // the layer is run again from its saved inputs by the ATen-only generic implementation,
      // under autograd, and autograd's gradient of that graph (with the recurrent input detached
      // in truncated mode: the paper's gradient) is returned, with its own graph.
      return differentiable_gradients(ctx, saved, grads);
    }
    const bool has_bias_ih = ctx->saved_data["has_bias_ih"].toBool();
    const bool has_bias_hh = ctx->saved_data["has_bias_hh"].toBool();
    BackwardArgs args;
    args.grad_output = grads[0];
    args.grad_h_n = grads[1];
    args.grad_s_n = grads[2];
    args.layer.input = saved[0];
    args.layer.weight_ih = saved[1];
    args.layer.weight_hh = saved[2];
    args.layer.h0 = optional_tensor(saved[3]);
    args.layer.batch_sizes = optional_tensor(saved[7]);
    args.layer.options = LayerOptions::from_ivalue(ctx->saved_data["options"]);
    args.saved = SavedForward{saved[4], saved[5], saved[6]};
    // Edges exist for the tensor inputs only: input, weight_ih, weight_hh, then the biases given.
    bool bias_needed = false;
    size_t edge = 3;
    for (const bool has_bias : {has_bias_ih, has_bias_hh}) {
      if (has_bias) {
        bias_needed = ctx->needs_input_grad(edge++) || bias_needed;
      }
    }
    args.wanted = GradientMask{ctx->needs_input_grad(0), ctx->needs_input_grad(1),
                               ctx->needs_input_grad(2), bias_needed};
    // Straight to the backend's kernel: the Autograd key's kernel of _lstm_backward only guards
    // against differentiating it, and boxing its sixteen arguments to say so would be a fixed
    // cost of every backward.
    const LayerGradients gradients = [&] {
      at::AutoDispatchBelowADInplaceOrView guard;
      return dispatch_backward(args);
    }();
    // Both biases get the same gradient; give each its own tensor, since .grad tensors that share
    // storage would be scaled twice by in-place users such as clip_grad_norm_.
    const at::Tensor& grad_bias = gradients.grad_bias;
    const at::Tensor grad_bias_hh =
        has_bias_hh && grad_bias.defined() ? (has_bias_ih ? grad_bias.clone() : grad_bias)
                                           : at::Tensor();
    return {gradients.grad_input,
            gradients.grad_weight_ih,
            gradients.grad_weight_hh,
            has_bias_ih ? grad_bias : at::Tensor(),
            grad_bias_hh,
            args.layer.h0 ? gradients.grad_h0 : at::Tensor(),
            ctx->saved_data["has_s0"].toBool() ? gradients.grad_s0 : at::Tensor(),
            at::Tensor()};
  }
};

LayerOutputs lstm_autograd(const LayerArgs& args) {
  const auto requires_grad = [](const std::optional<at::Tensor>& tensor) {
    return present(tensor) && tensor->requires_grad();
  };
  const bool differentiable =
      torch::autograd::GradMode::is_enabled() &&
      (args.input.requires_grad() || args.weight_ih.requires_grad() ||
       args.weight_hh.requires_grad() || requires_grad(args.bias_ih) ||
       requires_grad(args.bias_hh) || requires_grad(args.h0) || requires_grad(args.s0));
  if (!differentiable) {
    // Nothing to differentiate: the backend's lstm kernel, which keeps nothing for backward.
    at::AutoDispatchBelowADInplaceOrView guard;
    return dispatch_lstm(args);
  }
  const variable_list outputs = LstmFunction::apply(args.input, args.weight_ih, args.weight_hh,
                                                    args.bias_ih, args.bias_hh, args.h0, args.s0,
                                                    args);
  return {outputs[0], outputs[1], outputs[2]};
}

// _lstm_forward, _lstm_backward, _lstm_net_errors, the ensemble ops and the online ops are pieces of gradient
// computations and have no derivatives of their own. Called with inputs that require grad, they
// say so rather than return results that silently carry no gradient. One boxed kernel serves them
// all: it reads the tensor arguments off the stack.
void not_differentiable(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  if (torch::autograd::GradMode::is_enabled()) {
    const size_t arguments = op.schema().arguments().size();
    for (const c10::IValue& value : torch::jit::last(*stack, arguments)) {
      TORCH_CHECK(!value.isTensor() || !value.toTensor().requires_grad(), op.schema().name(),
                  " is not differentiable: call lstm1997::lstm for gradients (its backward with "
                  "create_graph=True is differentiable), or pass tensors that do not require "
                  "grad");
    }
  }
  // An op that writes to an argument (lstm_online_step_'s traces) bumps its version, as ATen's
  // in-place ops do, so that autograd sees the change if a graph saved that tensor.
  std::vector<at::Tensor> written;
  const auto& arguments = op.schema().arguments();
  for (size_t i = 0; i < arguments.size(); ++i) {
    const c10::AliasInfo* alias = arguments[i].alias_info();
    const c10::IValue& value = (*stack)[stack->size() - arguments.size() + i];
    if (alias != nullptr && alias->isWrite() && value.isTensor()) {
      written.push_back(value.toTensor());
    }
  }
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    op.callBoxed(stack);
  }
  for (const at::Tensor& tensor : written) {
    torch::autograd::impl::bump_version(tensor);
  }
}

// The refusal of not_differentiable for the two ops of OnlineLSTM's one-step path, as unboxed
// kernels: boxing their fourteen arguments on every call would cost about as much as a small
// step (benchmarks/bench.py, online table).
void refuse_gradients(const char* op, std::initializer_list<const at::Tensor*> tensors) {
  if (!torch::autograd::GradMode::is_enabled()) {
    return;
  }
  for (const at::Tensor* tensor : tensors) {
    TORCH_CHECK(!tensor->defined() || !tensor->requires_grad(), op,
                " is not differentiable: pass tensors that do not require grad, or call it under "
                "torch.no_grad() (OnlineLSTM computes the gradients it applies)");
  }
}

template <typename Signature>
auto typed_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

using OptionalTensor = std::optional<at::Tensor>;

at::Tensor online_forward_autograd(
    const at::Tensor& hidden, const at::Tensor& cell_state, const at::Tensor& step_input,
    const at::Tensor& previous, const at::Tensor& squashed_state, const at::Tensor& gates,
    const at::Tensor& input, const at::Tensor& weight_ih, const at::Tensor& weight_hh,
    const OptionalTensor& bias_ih, const OptionalTensor& bias_hh, c10::string_view activation,
    int64_t cells_per_block, bool gate_feedback) {
  static const auto op = typed_op<decltype(online_forward_autograd)>(
      "lstm1997::_lstm_online_forward_");
  const at::Tensor no_bias;
  refuse_gradients("lstm1997::_lstm_online_forward_",
                   {&hidden, &cell_state, &step_input, &previous, &squashed_state, &gates, &input,
                    &weight_ih, &weight_hh, bias_ih ? &*bias_ih : &no_bias,
                    bias_hh ? &*bias_hh : &no_bias});
  at::Tensor output;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    output = op.call(hidden, cell_state, step_input, previous, squashed_state, gates, input,
                     weight_ih, weight_hh, bias_ih, bias_hh, activation, cells_per_block,
                     gate_feedback);
  }
  for (const at::Tensor* written :
       {&hidden, &cell_state, &step_input, &previous, &squashed_state, &gates}) {
    torch::autograd::impl::bump_version(*written);
  }
  return output;
}

void online_update_autograd(const at::Tensor& trace_ih, const at::Tensor& trace_hh,
                            const at::Tensor& trace_bias, const at::Tensor& target_weight_ih,
                            const at::Tensor& target_weight_hh, const at::Tensor& target_bias_ih,
                            const at::Tensor& target_bias_hh,
                            const OptionalTensor& grad_output, const at::Tensor& step_input,
                            const at::Tensor& previous, const at::Tensor& squashed_state,
                            const at::Tensor& gates, double alpha, c10::string_view activation,
                            int64_t cells_per_block, bool gate_feedback) {
  static const auto op =
      typed_op<decltype(online_update_autograd)>("lstm1997::_lstm_online_update_");
  const at::Tensor no_grad_output;
  refuse_gradients("lstm1997::_lstm_online_update_",
                   {&trace_ih, &trace_hh, &trace_bias, grad_output ? &*grad_output : &no_grad_output,
                    &step_input, &previous, &squashed_state, &gates});
  refuse_gradients("lstm1997::_lstm_online_update_",
                   {&target_weight_ih, &target_weight_hh, &target_bias_ih, &target_bias_hh});
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    op.call(trace_ih, trace_hh, trace_bias, target_weight_ih, target_weight_hh, target_bias_ih,
            target_bias_hh, grad_output, step_input, previous, squashed_state, gates, alpha,
            activation, cells_per_block, gate_feedback);
  }
  for (const at::Tensor* written : {&trace_ih, &trace_hh, &trace_bias, &target_weight_ih,
                                    &target_weight_hh, &target_bias_ih, &target_bias_hh}) {
    torch::autograd::impl::bump_version(*written);
  }
}

}  // namespace

TORCH_LIBRARY_IMPL(lstm1997, Autograd, m) {
  m.impl("_lstm_online_forward_", &online_forward_autograd);
  m.impl("_lstm_online_update_", &online_update_autograd);
  m.impl("lstm", lstm_passing_kernel<&lstm_autograd>);
  for (const char* piece :
       {"_lstm_forward", "_lstm_backward", "_lstm_net_errors", "_lstm_ensemble_forward",
        "_lstm_ensemble_backward", "lstm_online_traces",
        "lstm_online_grads", "lstm_online_step_"}) {
    m.impl(piece, torch::CppFunction::makeFromBoxedFunction<&not_differentiable>());
  }
}

}  // namespace lstm1997
