// Shape-only kernels, so that torch.compile, torch.export and FakeTensor can trace the ops. They
// run the same argument checks as the real kernels (layer_ops.h) and work with symbolic sizes.
#include "ensemble.h"
#include "layer_ops.h"

#include <ATen/ATen.h>
#include <torch/library.h>

namespace lstm1997 {
namespace {

ForwardResult lstm_forward_meta(const LayerArgs& args) {
  const LayerSizes& sizes = args.sizes;
  const at::Tensor& input = args.input;
  const c10::SymInt &B = sizes.batch, &H = sizes.hidden_size;
  return {input.new_empty_symint({B, sizes.recurrent_size}),
          input.new_empty_symint({B, H}),
          {input.new_empty_symint(per_step_shape(sizes, H)),
           input.new_empty_symint(per_step_shape(sizes, H)),
           input.new_empty_symint(per_step_shape(sizes, H * kNumGates))}};
}

LayerOutputs lstm_meta(const LayerArgs& args) {
  const ForwardResult result = lstm_forward_meta(args);
  return {result.saved.output, result.h_n, result.s_n};
}

LayerGradients lstm_backward_meta(const BackwardArgs& args) {
  const LayerArgs& layer = args.layer;
  const LayerSizes& sizes = layer.sizes;
  const c10::SymInt &B = sizes.batch, &H = sizes.hidden_size;
  const auto maybe = [&](bool wanted, c10::SymIntArrayRef shape) {
    return wanted ? layer.input.new_empty_symint(shape) : at::Tensor();
  };
  return {maybe(args.wanted.input, layer.input.sym_sizes()),
          maybe(args.wanted.weight_ih, layer.weight_ih.sym_sizes()),
          maybe(args.wanted.weight_hh, layer.weight_hh.sym_sizes()),
          maybe(args.wanted.bias, {sizes.gate_rows}),
          layer.input.new_empty_symint({B, sizes.recurrent_size}),
          layer.input.new_empty_symint({B, H})};
}

NetErrorResult lstm_net_errors_meta(const BackwardArgs& args) {
  const LayerSizes& sizes = args.layer.sizes;
  const at::Tensor& input = args.layer.input;
  return {input.new_empty_symint({sizes.rows, sizes.gate_rows}),
          input.new_empty_symint({sizes.batch, sizes.recurrent_size}),
          input.new_empty_symint({sizes.batch, sizes.hidden_size})};
}

ForwardResult lstm_ensemble_forward_meta(const EnsembleArgs& args) {
  const ForwardResult one = lstm_forward_meta(args.member(0));
  const c10::SymInt& E = args.members;
  return {with_members(one.h_n, E), with_members(one.s_n, E),
          {with_members(one.saved.output, E), with_members(one.saved.squashed_state, E),
           with_members(one.saved.gates, E)}};
}

LayerGradients lstm_ensemble_backward_meta(const EnsembleBackwardArgs& args) {
  const LayerGradients one = lstm_backward_meta(args.member(0));
  const c10::SymInt& E = args.members;
  return {with_members(one.grad_input, E), with_members(one.grad_weight_ih, E),
          with_members(one.grad_weight_hh, E), with_members(one.grad_bias, E),
          with_members(one.grad_h0, E), with_members(one.grad_s0, E)};
}

}  // namespace

TORCH_LIBRARY_IMPL(lstm1997, Meta, m) {
  m.impl("lstm", lstm_kernel<&lstm_meta>);
  m.impl("_lstm_forward", forward_kernel<&lstm_forward_meta>);
  m.impl("_lstm_backward", backward_kernel<&lstm_backward_meta>);
  m.impl("_lstm_net_errors", net_errors_kernel<&lstm_net_errors_meta>);
  m.impl("_lstm_ensemble_forward", ensemble_forward_kernel<&lstm_ensemble_forward_meta>);
  m.impl("_lstm_ensemble_backward", ensemble_backward_kernel<&lstm_ensemble_backward_meta>);
}

}  // namespace lstm1997
