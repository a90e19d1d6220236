// The device-generic kernels serve every backend that has none of its own: registered as
// CompositeExplicitAutograd, they fill the dispatch table of CUDA, MPS, XPU, HIP, PrivateUse1 and
// every other backend key below autograd (the CPU and Meta keys have their own kernels, which
// take precedence; the CPU's hand over to these under LSTM1997_GENERIC=1).
#include "../layer_ops.h"
#include "kernels.h"

#include <torch/library.h>

#include <cstdlib>

namespace lstm1997 {

bool generic::forced_on_cpu() {
  const char* value = std::getenv("LSTM1997_GENERIC");
  return value != nullptr && value[0] == '1';
}

// A composition of ATen ops for autograd and torch.func to differentiate (ops.cpp).
TORCH_LIBRARY_IMPL(lstm1997, CompositeImplicitAutograd, m) {
  m.impl("_lstm_differentiable", lstm_kernel<&generic::differentiable_lstm>);
}

TORCH_LIBRARY_IMPL(lstm1997, CompositeExplicitAutograd, m) {
  m.impl("lstm", lstm_kernel<&generic::lstm_inference>);
  m.impl("_lstm_forward", forward_kernel<&generic::lstm_forward>);
  m.impl("_lstm_backward", backward_kernel<&generic::lstm_backward>);
  m.impl("_lstm_net_errors", net_errors_kernel<&generic::lstm_net_errors>);
}

}  // namespace lstm1997
