// Differentiation of lstm1997::lstm in C++, so that Python, TorchScript and LibTorch programs all
// get the same gradients. The Function calls the _lstm_forward and _lstm_backward ops through the
// dispatcher, so every backend (and the meta kernels, for tracing) serves it.
#include "layer_ops.h"

#include <torch/autograd.h>
#include <torch/library.h>

namespace lstm1997 {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::optional<at::Tensor> optional_tensor(const at::Tensor& tensor) {
  return tensor.defined() ? std::optional<at::Tensor>(tensor) : std::nullopt;
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
                            saved.gates, args.batch_sizes.value_or(at::Tensor())});
    ctx->saved_data["options"] = args.options.to_ivalue();
    ctx->saved_data["has_bias_ih"] = present(args.bias_ih);
    ctx->saved_data["has_bias_hh"] = present(args.bias_hh);
    ctx->saved_data["has_s0"] = present(args.s0);
    return {saved.output, result.h_n, result.s_n};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
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
    const LayerGradients gradients = dispatch_backward(args);
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

// _lstm_forward, _lstm_backward, _lstm_net_errors and the online ops are pieces of gradient computations and have
// no derivatives of their own. Called with inputs that require grad, they say so rather than
// return results that silently carry no gradient (this also rejects double backward through lstm).
// One boxed kernel serves them all: it reads the tensor arguments off the stack.
void not_differentiable(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  if (torch::autograd::GradMode::is_enabled()) {
    const size_t arguments = op.schema().arguments().size();
    for (const c10::IValue& value : torch::jit::last(*stack, arguments)) {
      TORCH_CHECK(!value.isTensor() || !value.toTensor().requires_grad(), op.schema().name(),
                  " is not differentiable (double backward through lstm1997::lstm is not "
                  "supported either): call lstm1997::lstm for gradients, or pass tensors that do "
                  "not require grad");
    }
  }
  at::AutoDispatchBelowADInplaceOrView guard;
  op.callBoxed(stack);
}

}  // namespace

TORCH_LIBRARY_IMPL(lstm1997, Autograd, m) {
  m.impl("lstm", lstm_passing_kernel<&lstm_autograd>);
  for (const char* piece :
       {"_lstm_forward", "_lstm_backward", "_lstm_net_errors", "lstm_online_traces",
        "lstm_online_grads"}) {
    m.impl(piece, torch::CppFunction::makeFromBoxedFunction<&not_differentiable>());
  }
}

}  // namespace lstm1997
