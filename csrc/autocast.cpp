// Autocast for lstm1997::lstm: inside torch.autocast the layer runs in the autocast dtype (e.g.
// bfloat16 on the CPU, float16 on CUDA), as PyTorch's own RNNs do (their ops are in autocast's
// lower-precision list). The kernel casts the floating-point tensors that autocast would cast
// (on that device, not float64; batch_sizes is an integer tensor and stays), then calls lstm below
// autocast; the cast's own backward returns float32 gradients to float32 parameters. Half types
// compute their pointwise math and carry the cell state in float32 (cell_math.h), so only the
// storage and the products run in the lower precision.
#include "layer_ops.h"

#include <ATen/autocast_mode.h>
#include <torch/library.h>

namespace lstm1997 {
namespace {

template <c10::DeviceType device_type, typename Describe = decltype(&describe_lstm_args)>
struct AutocastLstm;

template <c10::DeviceType device_type, typename... Arguments>
struct AutocastLstm<device_type, LayerArgs (*)(Arguments...)> {
  static LayerOutputsTuple call(Arguments... arguments) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(
        at::autocast::get_autocast_dispatch_key_from_device_type(device_type));
    const at::ScalarType dtype =
        at::autocast::get_lower_precision_fp_from_device_type(device_type);
    return to_tuple(dispatch_lstm(
        describe_lstm_args(at::autocast::cached_cast(dtype, arguments, device_type)...)));
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(lstm1997, AutocastCPU, m) {
  m.impl("lstm", &AutocastLstm<c10::DeviceType::CPU>::call);
}

TORCH_LIBRARY_IMPL(lstm1997, Autocast, m) {  // CUDA
  m.impl("lstm", &AutocastLstm<c10::DeviceType::CUDA>::call);
}

TORCH_LIBRARY_IMPL(lstm1997, AutocastXPU, m) {
  m.impl("lstm", &AutocastLstm<c10::DeviceType::XPU>::call);
}

TORCH_LIBRARY_IMPL(lstm1997, AutocastMPS, m) {
  m.impl("lstm", &AutocastLstm<c10::DeviceType::MPS>::call);
}

TORCH_LIBRARY_IMPL(lstm1997, AutocastPrivateUse1, m) {
  m.impl("lstm", &AutocastLstm<c10::DeviceType::PrivateUse1>::call);
}

}  // namespace lstm1997
