// The CPU kernels of the layer ops (the online ops are composite: online.cpp).
#include "../layer_ops.h"
#include "kernels.h"

#include <torch/library.h>

namespace lstm1997 {

TORCH_LIBRARY_IMPL(lstm1997, CPU, m) {
  m.impl("lstm", lstm_kernel<&cpu::lstm_inference>);
  m.impl("_lstm_forward", forward_kernel<&cpu::lstm_forward>);
  m.impl("_lstm_backward", backward_kernel<&cpu::lstm_backward>);
}

}  // namespace lstm1997
