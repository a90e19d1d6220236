// The device-generic implementation of the layer ops: only ATen tensor ops, so it runs on every
// device PyTorch has (CUDA, MPS, XPU, any other, and meta), and is what every backend without
// kernels of its own uses (register.cpp). It never reads a device tensor's values on the host:
// the only host loops are over the steps, whose rows come from batch_sizes (a CPU tensor, as in a
// PackedSequence), and every tensor it makes is made on the input's device.
//
// The forward runs one recurrent product and a few pointwise ops per step; the truncated backward
// has no sequential product at all (one reverse cumulative sum over time, then the large products
// of parameter_gradients.h); exact BPTT runs one product with W_hh per step.
#pragma once

#include "../layer_args.h"

namespace lstm1997 {
namespace generic {

// lstm without autograd (nothing saved for backward), and _lstm_forward.
LayerOutputs lstm_inference(const LayerArgs& args);
ForwardResult lstm_forward(const LayerArgs& args);

// lstm's outputs by ATen ops that autograd can differentiate (called with autograd on, not as a
// kernel): in truncated mode the recurrent input is detached where it enters the recurrent
// product, so that autograd's gradient is the paper's truncated one (autograd.cpp's double
// backward differentiates that gradient).
LayerOutputs differentiable_lstm(const LayerArgs& args);

// _lstm_backward, and its first half, _lstm_net_errors.
LayerGradients lstm_backward(const BackwardArgs& args);
NetErrorResult lstm_net_errors(const BackwardArgs& args);

// Whether the CPU runs this implementation too: LSTM1997_GENERIC=1 (read at every call, so that
// tests can run each path side by side).
bool forced_on_cpu();

}  // namespace generic
}  // namespace lstm1997
