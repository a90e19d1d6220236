// An ensemble: E layers of the same sizes and options, run by one call. Every tensor argument of
// _lstm_ensemble_forward and _lstm_ensemble_backward (ops.cpp) but batch_sizes, which the members
// share, has the members in front (dim 0) and each member's tensor behind, as _lstm_forward and
// _lstm_backward take it; so has every result. torch.func's batching rules call these ops for
// vmap over stacked weights (python/lstm1997/_transforms.py).
#pragma once

#include "checks.h"
#include "layer_args.h"
#include "layer_ops.h"

namespace lstm1997 {

struct EnsembleArgs {
  LayerArgs stacked;  // the tensors as given, members in front; the sizes are one member's
  c10::SymInt members;

  LayerArgs member(int64_t e) const;  // member e's call of _lstm_forward
};

struct EnsembleBackwardArgs {
  BackwardArgs stacked;  // as EnsembleArgs::stacked
  c10::SymInt members;

  BackwardArgs member(int64_t e) const;  // member e's call of _lstm_backward
};

// The checks: every tensor has the same number of members in front (at least one), and member 0
// passes _lstm_forward's (_lstm_backward's) checks, which then hold for every member: they have
// the same shapes, and batch_sizes is shared.
EnsembleArgs check_ensemble_forward_args(
    const at::Tensor& input, const at::Tensor& weight_ih, const at::Tensor& weight_hh,
    const std::optional<at::Tensor>& bias_ih, const std::optional<at::Tensor>& bias_hh,
    const std::optional<at::Tensor>& h0, const std::optional<at::Tensor>& s0,
    c10::string_view activation, const std::optional<at::Tensor>& batch_sizes,
    int64_t cells_per_block, bool gate_feedback);

EnsembleBackwardArgs check_ensemble_backward_args(
    const at::Tensor& grad_output, const at::Tensor& grad_h_n, const at::Tensor& grad_s_n,
    const at::Tensor& input, const at::Tensor& weight_ih, const at::Tensor& weight_hh,
    const std::optional<at::Tensor>& h0, const at::Tensor& output,
    const at::Tensor& squashed_state, const at::Tensor& gates, bool truncate,
    c10::string_view activation, const std::optional<at::Tensor>& batch_sizes,
    std::array<bool, 4> output_mask, int64_t cells_per_block, bool gate_feedback);

// The kernels of every backend without its own: one _lstm_forward (_lstm_backward) call per
// member through the dispatcher, the results stacked.
ForwardResult ensemble_forward_by_member(const EnsembleArgs& args);
LayerGradients ensemble_backward_by_member(const EnsembleBackwardArgs& args);

// A result of one member (from the member's meta kernel) with the members in front.
at::Tensor with_members(const at::Tensor& tensor, const c10::SymInt& members);

template <ForwardResult (*impl)(const EnsembleArgs&)>
constexpr auto ensemble_forward_kernel =
    &detail::OpKernel<&check_ensemble_forward_args, impl>::call;

template <LayerGradients (*impl)(const EnsembleBackwardArgs&)>
constexpr auto ensemble_backward_kernel =
    &detail::OpKernel<&check_ensemble_backward_args, impl>::call;

}  // namespace lstm1997
