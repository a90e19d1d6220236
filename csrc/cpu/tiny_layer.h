// The tiny-layer path (tiny_layer.cpp): layers of the paper's sizes run each batch row through all
// its steps in one loop, forward and backward, with no library call, ATen op, allocation or thread
// hand-off per step.
#pragma once

#include "../layer_args.h"
#include "../step_rows.h"

#include <vector>

namespace lstm1997 {
namespace cpu {

// The largest hidden_size the path takes (the paper's layers have 2 to 12 cells).
constexpr int64_t kTinyMaxHidden = 32;
// Without memory cell blocks, layers with this many rows or more leave the path (for the
// small-layer loop of small_layer.h, whose register tiles share each weight load between rows,
// where forward.cpp's choose_path picks it).
constexpr int64_t kTinyMaxBatch = 8;
// From this many inputs on, the path takes the input's products as dot products per gate row and
// the input weights' gradient once per row (tiny_layer.cpp, TinyLayer::wide): exp 2c's one-hot
// symbols (p + 4 of them, up to 1,004). LSTM1997_TINY_WIDE_INPUTS=0 or =1 turns that off or on
// whatever the input size (tests and benchmarks/bench.py compare the two).
constexpr int64_t kTinyWideInputs = 32;

// Whether a call takes the path: float or double, hidden_size <= kTinyMaxHidden, at least one
// step and one row, and memory cell blocks, fewer than kTinyMaxBatch rows or packed rows.
// LSTM1997_TINY_LAYER=0 or =1 turns it off or on for every call it can run (tests compare the
// paths).
bool use_tiny_layer(const LayerArgs& args);
// Whether the path runs the layer's rows lane-packed (AVX-512 builds, float32, hidden_size <= 8,
// not the wide-input branch; LSTM1997_TINY_PACKED=0 turns it off): then it takes every batch size.
bool packs_rows(const LayerArgs& args);

// The forward (with `save`, also what the backward reads: gates and h(s_t)), as run_forward's.
ForwardResult tiny_layer_forward(const LayerArgs& args, const StepRows& steps, bool save);
// _lstm_backward, both modes.
LayerGradients tiny_layer_backward(const BackwardArgs& args, const StepRows& steps);

// An ensemble (_lstm_ensemble_forward, _lstm_ensemble_backward: ensemble.h): E members of the
// same sizes and options, each taking the path (use_tiny_layer of one is that of all), their rows
// split between threads together; results with the members in front.
ForwardResult tiny_ensemble_forward(const std::vector<LayerArgs>& members, const StepRows& steps);
LayerGradients tiny_ensemble_backward(const std::vector<BackwardArgs>& members,
                                      const StepRows& steps);

}  // namespace cpu
}  // namespace lstm1997
