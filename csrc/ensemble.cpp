// The ensemble ops' checks, members and default kernels (ensemble.h). The CPU's own kernel is
// cpu/ensemble.cpp; the meta kernels are meta.cpp's.
#include "ensemble.h"

#include <ATen/ATen.h>
#include <torch/library.h>

#include <vector>

namespace lstm1997 {
namespace {

// Every tensor argument's leading dimension is the members'.
void check_members(const char* op, const char* name, const at::Tensor& tensor,
                   const c10::SymInt& members) {
  TORCH_CHECK(tensor.dim() >= 1 && tensor.sym_size(0) == members, "lstm1997::", op, ": ", name,
              ": expected the ", members, " members in front (dim 0, as input has them), got a "
              "tensor of shape ", tensor.sym_sizes());
}

void check_members(const char* op, const char* name, const std::optional<at::Tensor>& tensor,
                   const c10::SymInt& members) {
  if (present(tensor)) {
    check_members(op, name, *tensor, members);
  }
}

c10::SymInt count_members(const char* op, const at::Tensor& input) {
  TORCH_CHECK(input.dim() >= 1, "lstm1997::", op, ": input: expected the members in front "
              "(dim 0), got a tensor of no dimensions");
  const c10::SymInt members = input.sym_size(0);
  TORCH_SYM_CHECK(members.sym_ge(1), "lstm1997::", op, ": input: expected at least one member "
                  "(dim 0), got none");
  return members;
}

at::Tensor select_member(const at::Tensor& tensor, int64_t e) {
  return tensor.defined() ? tensor.select(0, e) : tensor;
}

std::optional<at::Tensor> select_member(const std::optional<at::Tensor>& tensor, int64_t e) {
  return present(tensor) ? std::optional<at::Tensor>(tensor->select(0, e)) : tensor;
}

at::Tensor stack_defined(const std::vector<at::Tensor>& tensors) {
  return tensors.front().defined() ? at::stack(tensors) : at::Tensor();
}

}  // namespace

LayerArgs EnsembleArgs::member(int64_t e) const {
  LayerArgs args = stacked;
  args.input = select_member(stacked.input, e);
  args.weight_ih = select_member(stacked.weight_ih, e);
  args.weight_hh = select_member(stacked.weight_hh, e);
  args.bias_ih = select_member(stacked.bias_ih, e);
  args.bias_hh = select_member(stacked.bias_hh, e);
  args.h0 = select_member(stacked.h0, e);
  args.s0 = select_member(stacked.s0, e);
  return args;
}

BackwardArgs EnsembleBackwardArgs::member(int64_t e) const {
  BackwardArgs args = stacked;
  args.grad_output = select_member(stacked.grad_output, e);
  args.grad_h_n = select_member(stacked.grad_h_n, e);
  args.grad_s_n = select_member(stacked.grad_s_n, e);
  args.layer = EnsembleArgs{stacked.layer, members}.member(e);
  args.saved.output = select_member(stacked.saved.output, e);
  args.saved.squashed_state = select_member(stacked.saved.squashed_state, e);
  args.saved.gates = select_member(stacked.saved.gates, e);
  return args;
}

EnsembleArgs check_ensemble_forward_args(
    const at::Tensor& input, const at::Tensor& weight_ih, const at::Tensor& weight_hh,
    const std::optional<at::Tensor>& bias_ih, const std::optional<at::Tensor>& bias_hh,
    const std::optional<at::Tensor>& h0, const std::optional<at::Tensor>& s0,
    c10::string_view activation, const std::optional<at::Tensor>& batch_sizes,
    int64_t cells_per_block, bool gate_feedback) {
  constexpr const char* op = "_lstm_ensemble_forward";
  const c10::SymInt members = count_members(op, input);
  check_members(op, "weight_ih", weight_ih, members);
  check_members(op, "weight_hh", weight_hh, members);
  check_members(op, "bias_ih", bias_ih, members);
  check_members(op, "bias_hh", bias_hh, members);
  check_members(op, "h0", h0, members);
  check_members(op, "s0", s0, members);
  EnsembleArgs args{check_forward_args(select_member(input, 0), select_member(weight_ih, 0),
                                       select_member(weight_hh, 0), select_member(bias_ih, 0),
                                       select_member(bias_hh, 0), select_member(h0, 0),
                                       select_member(s0, 0), activation, batch_sizes,
                                       cells_per_block, gate_feedback),
                    members};
  LayerArgs& stacked = args.stacked;
  stacked.input = input;
  stacked.weight_ih = weight_ih;
  stacked.weight_hh = weight_hh;
  stacked.bias_ih = bias_ih;
  stacked.bias_hh = bias_hh;
  stacked.h0 = h0;
  stacked.s0 = s0;
  return args;
}

EnsembleBackwardArgs check_ensemble_backward_args(
    const at::Tensor& grad_output, const at::Tensor& grad_h_n, const at::Tensor& grad_s_n,
    const at::Tensor& input, const at::Tensor& weight_ih, const at::Tensor& weight_hh,
    const std::optional<at::Tensor>& h0, const at::Tensor& output,
    const at::Tensor& squashed_state, const at::Tensor& gates, bool truncate,
    c10::string_view activation, const std::optional<at::Tensor>& batch_sizes,
    std::array<bool, 4> output_mask, int64_t cells_per_block, bool gate_feedback) {
  constexpr const char* op = "_lstm_ensemble_backward";
  const c10::SymInt members = count_members(op, input);
  check_members(op, "grad_output", grad_output, members);
  check_members(op, "grad_h_n", grad_h_n, members);
  check_members(op, "grad_s_n", grad_s_n, members);
  check_members(op, "weight_ih", weight_ih, members);
  check_members(op, "weight_hh", weight_hh, members);
  check_members(op, "h0", h0, members);
  check_members(op, "output", output, members);
  check_members(op, "squashed_state", squashed_state, members);
  check_members(op, "gates", gates, members);
  EnsembleBackwardArgs args{
      check_backward_args(select_member(grad_output, 0), select_member(grad_h_n, 0),
                          select_member(grad_s_n, 0), select_member(input, 0),
                          select_member(weight_ih, 0), select_member(weight_hh, 0),
                          select_member(h0, 0), select_member(output, 0),
                          select_member(squashed_state, 0), select_member(gates, 0), truncate,
                          activation, batch_sizes, output_mask, cells_per_block, gate_feedback),
      members};
  BackwardArgs& stacked = args.stacked;
  stacked.grad_output = grad_output;
  stacked.grad_h_n = grad_h_n;
  stacked.grad_s_n = grad_s_n;
  stacked.layer.input = input;
  stacked.layer.weight_ih = weight_ih;
  stacked.layer.weight_hh = weight_hh;
  stacked.layer.h0 = h0;
  stacked.saved = {output, squashed_state, gates};
  return args;
}

ForwardResult ensemble_forward_by_member(const EnsembleArgs& args) {
  const int64_t members = args.members.expect_int();
  std::vector<at::Tensor> output, h_n, s_n, squashed_state, gates;
  for (int64_t e = 0; e < members; ++e) {
    const ForwardResult result = dispatch_forward(args.member(e));
    output.push_back(result.saved.output);
    h_n.push_back(result.h_n);
    s_n.push_back(result.s_n);
    squashed_state.push_back(result.saved.squashed_state);
    gates.push_back(result.saved.gates);
  }
  return {at::stack(h_n), at::stack(s_n),
          {at::stack(output), at::stack(squashed_state), at::stack(gates)}};
}

LayerGradients ensemble_backward_by_member(const EnsembleBackwardArgs& args) {
  const int64_t members = args.members.expect_int();
  std::vector<at::Tensor> input, weight_ih, weight_hh, bias, h0, s0;
  for (int64_t e = 0; e < members; ++e) {
    const LayerGradients result = dispatch_backward(args.member(e));
    input.push_back(result.grad_input);
    weight_ih.push_back(result.grad_weight_ih);
    weight_hh.push_back(result.grad_weight_hh);
    bias.push_back(result.grad_bias);
    h0.push_back(result.grad_h0);
    s0.push_back(result.grad_s0);
  }
  return {stack_defined(input), stack_defined(weight_ih), stack_defined(weight_hh),
          stack_defined(bias),  at::stack(h0),            at::stack(s0)};
}

at::Tensor with_members(const at::Tensor& tensor, const c10::SymInt& members) {
  if (!tensor.defined()) {
    return tensor;
  }
  std::vector<c10::SymInt> shape{members};
  for (const c10::SymInt& size : tensor.sym_sizes()) {
    shape.push_back(size);
  }
  return tensor.new_empty_symint(shape);
}

TORCH_LIBRARY_IMPL(lstm1997, CompositeExplicitAutograd, m) {
  m.impl("_lstm_ensemble_forward", ensemble_forward_kernel<&ensemble_forward_by_member>);
  m.impl("_lstm_ensemble_backward", ensemble_backward_kernel<&ensemble_backward_by_member>);
}

}  // namespace lstm1997
