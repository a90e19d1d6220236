// The CPU kernels of the layer ops (online_step.cpp registers lstm_online_step_'s; the other online
// ops are composite: online.cpp). Under
// LSTM1997_GENERIC=1 each hands the call to the device-generic implementation (generic/), so that
// the test suite checks that implementation on a machine without a GPU.
#include "../generic/kernels.h"
#include "../layer_ops.h"
#include "kernels.h"

#include <torch/library.h>

namespace lstm1997 {
namespace {

template <typename Result, typename Args, Result (*cpu_kernel)(const Args&),
          Result (*generic_kernel)(const Args&)>
Result cpu_or_generic(const Args& args) {
  return generic::forced_on_cpu() ? generic_kernel(args) : cpu_kernel(args);
}

}  // namespace

TORCH_LIBRARY_IMPL(lstm1997, CPU, m) {
  m.impl("lstm", lstm_kernel<&cpu_or_generic<LayerOutputs, LayerArgs, &cpu::lstm_inference,
                                             &generic::lstm_inference>>);
  m.impl("_lstm_forward",
         forward_kernel<&cpu_or_generic<ForwardResult, LayerArgs, &cpu::lstm_forward,
                                        &generic::lstm_forward>>);
  m.impl("_lstm_backward",
         backward_kernel<&cpu_or_generic<LayerGradients, BackwardArgs, &cpu::lstm_backward,
                                         &generic::lstm_backward>>);
  m.impl("_lstm_net_errors",
         net_errors_kernel<&cpu_or_generic<NetErrorResult, BackwardArgs, &cpu::lstm_net_errors,
                                           &generic::lstm_net_errors>>);
  m.impl("_lstm_ensemble_forward",
         ensemble_forward_kernel<&cpu_or_generic<ForwardResult, EnsembleArgs,
                                                 &cpu::lstm_ensemble_forward,
                                                 &ensemble_forward_by_member>>);
  m.impl("_lstm_ensemble_backward",
         ensemble_backward_kernel<&cpu_or_generic<LayerGradients, EnsembleBackwardArgs,
                                                  &cpu::lstm_ensemble_backward,
                                                  &ensemble_backward_by_member>>);
}

}  // namespace lstm1997
