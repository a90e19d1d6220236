#include "layer_ops.h"

#include <ATen/core/dispatch/Dispatcher.h>

namespace lstm1997 {
namespace {

// The C++ function type of an op: its check's parameters, returning the op's tuple.
template <typename Result, typename Check>
struct SignatureOf;

template <typename Result, typename Description, typename... Arguments>
struct SignatureOf<Result, Description (*)(Arguments...)> {
  using type = Result(Arguments...);
};

template <typename Result, auto check>
auto find_op(const char* name) {
  return c10::Dispatcher::singleton()
      .findSchemaOrThrow(name, "")
      .typed<typename SignatureOf<Result, decltype(check)>::type>();
}

}  // namespace

LayerOutputsTuple to_tuple(const LayerOutputs& outputs) {
  return {outputs.output, outputs.h_n, outputs.s_n};
}

ForwardResultTuple to_tuple(const ForwardResult& result) {
  return {result.saved.output, result.h_n, result.s_n, result.saved.squashed_state,
          result.saved.gates};
}

LayerGradientsTuple to_tuple(const LayerGradients& gradients) {
  return {gradients.grad_input, gradients.grad_weight_ih, gradients.grad_weight_hh,
          gradients.grad_bias,  gradients.grad_h0,        gradients.grad_s0};
}

NetErrorsTuple to_tuple(const NetErrorResult& errors) {
  return {errors.net_errors, errors.grad_h0, errors.grad_s0};
}

LayerOutputs dispatch_lstm(const LayerArgs& args) {
  static const auto op = find_op<LayerOutputsTuple, &describe_lstm_args>("lstm1997::lstm");
  const LayerOptions& options = args.options;
  auto [output, h_n, s_n] =
      op.call(args.input, args.weight_ih, args.weight_hh, args.bias_ih, args.bias_hh, args.h0,
              args.s0, options.truncate, activation_name(options.activation), args.batch_sizes,
              options.cells_per_block, options.gate_feedback);
  return {output, h_n, s_n};
}

ForwardResult dispatch_forward(const LayerArgs& args) {
  static const auto op =
      find_op<ForwardResultTuple, &check_forward_args>("lstm1997::_lstm_forward");
  const LayerOptions& options = args.options;
  auto [output, h_n, s_n, squashed_state, gates] =
      op.call(args.input, args.weight_ih, args.weight_hh, args.bias_ih, args.bias_hh, args.h0,
              args.s0, activation_name(options.activation), args.batch_sizes,
              options.cells_per_block, options.gate_feedback);
  return {h_n, s_n, {output, squashed_state, gates}};
}

LayerGradients dispatch_backward(const BackwardArgs& args) {
  static const auto op =
      find_op<LayerGradientsTuple, &check_backward_args>("lstm1997::_lstm_backward");
  const LayerArgs& layer = args.layer;
  const LayerOptions& options = layer.options;
  const GradientMask& wanted = args.wanted;
  auto [grad_input, grad_weight_ih, grad_weight_hh, grad_bias, grad_h0, grad_s0] = op.call(
      args.grad_output, args.grad_h_n, args.grad_s_n, layer.input, layer.weight_ih,
      layer.weight_hh, layer.h0, args.saved.output, args.saved.squashed_state, args.saved.gates,
      options.truncate, activation_name(options.activation), layer.batch_sizes,
      {wanted.input, wanted.weight_ih, wanted.weight_hh, wanted.bias}, options.cells_per_block,
      options.gate_feedback);
  return {grad_input, grad_weight_ih, grad_weight_hh, grad_bias, grad_h0, grad_s0};
}

}  // namespace lstm1997
