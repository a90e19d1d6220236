// The CPU kernels of the ensemble ops (ensemble.h): members of the paper's sizes run together on
// the tiny-layer path (their rows split between threads as one batch); larger members one
// _lstm_forward or _lstm_backward call each.
#include "kernels.h"
#include "tiny_layer.h"

#include <vector>

namespace lstm1997 {
namespace cpu {

ForwardResult lstm_ensemble_forward(const EnsembleArgs& args) {
  const LayerArgs first = args.member(0);
  if (!use_tiny_layer(first)) {
    return ensemble_forward_by_member(args);
  }
  std::vector<LayerArgs> members;
  for (int64_t e = 0; e < args.members.expect_int(); ++e) {
    members.push_back(args.member(e));
  }
  return tiny_ensemble_forward(members, step_rows(first));
}

LayerGradients lstm_ensemble_backward(const EnsembleBackwardArgs& args) {
  const BackwardArgs first = args.member(0);
  if (!use_tiny_layer(first.layer)) {
    return ensemble_backward_by_member(args);
  }
  std::vector<BackwardArgs> members;
  for (int64_t e = 0; e < args.members.expect_int(); ++e) {
    members.push_back(args.member(e));
  }
  return tiny_ensemble_backward(members, step_rows(first.layer));
}

}  // namespace cpu
}  // namespace lstm1997
