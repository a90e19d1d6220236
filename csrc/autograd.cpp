// Differentiation of lstm1997::lstm in C++, so that Python, TorchScript and LibTorch programs all
// get the same gradients. The Function calls the lstm_forward and lstm_backward ops through the
// dispatcher, so every backend (and the meta kernels, for tracing) serves it.
#include "api.h"
#include "lstm1997.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <array>

namespace lstm1997 {

BackwardResult call_backward(const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                             const at::Tensor& grad_s_n, const at::Tensor& input,
                             const at::Tensor& weight_ih, const at::Tensor& weight_hh,
                             const std::optional<at::Tensor>& h0, const at::Tensor& output,
                             const at::Tensor& squashed_state, const at::Tensor& gates, bool truncate,
                             c10::string_view activation,
                             const std::optional<at::Tensor>& batch_sizes,
                             std::array<bool, 4> output_mask, int64_t cells_per_block) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("lstm1997::lstm_backward", "")
                             .typed<decltype(call_backward)>();
  return op.call(grad_output, grad_h_n, grad_s_n, input, weight_ih, weight_hh, h0, output,
                 squashed_state, gates, truncate, activation, batch_sizes, output_mask,
                 cells_per_block);
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::optional<at::Tensor> optional_tensor(const at::Tensor& tensor) {
  return tensor.defined() ? std::optional<at::Tensor>(tensor) : std::nullopt;
}


ForwardResult call_forward(const at::Tensor& input, const at::Tensor& weight_ih,
                           const at::Tensor& weight_hh, const std::optional<at::Tensor>& bias_ih,
                           const std::optional<at::Tensor>& bias_hh,
                           const std::optional<at::Tensor>& h0,
                           const std::optional<at::Tensor>& s0, c10::string_view activation,
                           const std::optional<at::Tensor>& batch_sizes, int64_t cells_per_block) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("lstm1997::lstm_forward", "")
                             .typed<decltype(call_forward)>();
  return op.call(input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0, activation, batch_sizes,
                 cells_per_block);
}

class LstmFunction : public torch::autograd::Function<LstmFunction> {
 public:
  // The activation travels as a std::string because the context outlives the call.
  static variable_list forward(AutogradContext* ctx, const at::Tensor& input,
                               const at::Tensor& weight_ih, const at::Tensor& weight_hh,
                               const std::optional<at::Tensor>& bias_ih,
                               const std::optional<at::Tensor>& bias_hh,
                               const std::optional<at::Tensor>& h0,
                               const std::optional<at::Tensor>& s0, bool truncate,
                               const std::string& activation,
                               const std::optional<at::Tensor>& batch_sizes,
                               int64_t cells_per_block) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [output, h_n, s_n, squashed_state, gates] =
        call_forward(input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0, activation,
                     batch_sizes, cells_per_block);
    ctx->save_for_backward({input, weight_ih, weight_hh, h0.value_or(at::Tensor()), output,
                            squashed_state, gates, batch_sizes.value_or(at::Tensor())});
    ctx->saved_data["truncate"] = truncate;
    ctx->saved_data["activation"] = activation;
    ctx->saved_data["has_bias_ih"] = present(bias_ih);
    ctx->saved_data["has_bias_hh"] = present(bias_hh);
    ctx->saved_data["has_s0"] = present(s0);
    ctx->saved_data["cells_per_block"] = cells_per_block;
    return {output, h_n, s_n};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &input = saved[0], &weight_ih = saved[1], &weight_hh = saved[2],
                     &h0 = saved[3], &output = saved[4], &squashed_state = saved[5],
                     &gates = saved[6], &batch_sizes = saved[7];
    const bool has_bias_ih = ctx->saved_data["has_bias_ih"].toBool();
    const bool has_bias_hh = ctx->saved_data["has_bias_hh"].toBool();
    // Edges exist for the tensor inputs only: input, weight_ih, weight_hh, then the biases given.
    bool bias_needed = false;
    size_t edge = 3;
    for (const bool has_bias : {has_bias_ih, has_bias_hh}) {
      if (has_bias) {
        bias_needed = ctx->needs_input_grad(edge++) || bias_needed;
      }
    }
    const std::array<bool, 4> output_mask = {ctx->needs_input_grad(0), ctx->needs_input_grad(1),
                                             ctx->needs_input_grad(2), bias_needed};
    auto [grad_input, grad_weight_ih, grad_weight_hh, grad_bias, grad_h0, grad_s0] =
        call_backward(grads[0], grads[1], grads[2], input, weight_ih, weight_hh,
                      optional_tensor(h0), output, squashed_state, gates,
                      ctx->saved_data["truncate"].toBool(),
                      ctx->saved_data["activation"].toStringRef(), optional_tensor(batch_sizes),
                      output_mask, ctx->saved_data["cells_per_block"].toInt());
    // Both biases get the same gradient; give each its own tensor, since .grad tensors that share
    // storage would be scaled twice by in-place users such as clip_grad_norm_.
    const at::Tensor grad_bias_hh =
        has_bias_hh && grad_bias.defined() ? (has_bias_ih ? grad_bias.clone() : grad_bias)
                                           : at::Tensor();
    return {grad_input,
            grad_weight_ih,
            grad_weight_hh,
            has_bias_ih ? grad_bias : at::Tensor(),
            grad_bias_hh,
            h0.defined() ? grad_h0 : at::Tensor(),
            ctx->saved_data["has_s0"].toBool() ? grad_s0 : at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_autograd(
    const at::Tensor& input, const at::Tensor& weight_ih, const at::Tensor& weight_hh,
    const std::optional<at::Tensor>& bias_ih, const std::optional<at::Tensor>& bias_hh,
    const std::optional<at::Tensor>& h0, const std::optional<at::Tensor>& s0, bool truncate,
    c10::string_view activation, const std::optional<at::Tensor>& batch_sizes,
    int64_t cells_per_block) {
  const auto requires_grad = [](const std::optional<at::Tensor>& tensor) {
    return present(tensor) && tensor->requires_grad();
  };
  const bool differentiable =
      torch::autograd::GradMode::is_enabled() &&
      (input.requires_grad() || weight_ih.requires_grad() || weight_hh.requires_grad() ||
       requires_grad(bias_ih) || requires_grad(bias_hh) || requires_grad(h0) || requires_grad(s0));
  if (!differentiable) {
    // Nothing to differentiate: the backend's lstm kernel, which keeps nothing for backward.
    at::AutoDispatchBelowADInplaceOrView guard;
    return lstm1997::lstm(input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0, truncate,
                          activation, batch_sizes, cells_per_block);
  }
  const variable_list outputs =
      LstmFunction::apply(input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0, truncate,
                          std::string(activation), batch_sizes, cells_per_block);
  return {outputs[0], outputs[1], outputs[2]};
}

// Below autograd, on backends without an lstm kernel of their own (and for the meta kernels that
// tracing uses), lstm is lstm_forward without the saved tensors.
std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_no_autograd(
    const at::Tensor& input, const at::Tensor& weight_ih, const at::Tensor& weight_hh,
    const std::optional<at::Tensor>& bias_ih, const std::optional<at::Tensor>& bias_hh,
    const std::optional<at::Tensor>& h0, const std::optional<at::Tensor>& s0, bool /*truncate*/,
    c10::string_view activation, const std::optional<at::Tensor>& batch_sizes,
    int64_t cells_per_block) {
  auto [output, h_n, s_n, squashed_state, gates] = call_forward(
      input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0, activation, batch_sizes,
      cells_per_block);
  return {output, h_n, s_n};
}

// lstm_forward, lstm_backward and the online ops are pieces of gradient computations and have no
// derivatives of their own. Called with inputs that require grad, they say so rather than return
// results that silently carry no gradient (this also rejects double backward through lstm).
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
  m.impl("lstm", &lstm_autograd);
  for (const char* piece :
       {"lstm_forward", "lstm_backward", "lstm_online_traces", "lstm_online_grads"}) {
    m.impl(piece, torch::CppFunction::makeFromBoxedFunction<&not_differentiable>());
  }
}

TORCH_LIBRARY_IMPL(lstm1997, CompositeExplicitAutograd, m) {
  m.impl("lstm", &lstm_no_autograd);
}

}  // namespace lstm1997
