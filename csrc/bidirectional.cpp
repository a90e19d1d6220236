// lstm_bidirectional: both directions of one layer, composed of two lstm calls.
//
// Registered as CompositeImplicitAutograd: autograd, every backend, the meta kernels, torch.func
// and torch.compile all see through it to lstm, so it adds no kernel of its own. It exists so that
// a bidirectional layer is one op where graphs are captured: torch.export keeps a composite custom
// op as one node, and torch.jit.trace records it as one, so the ONNX translations
// (python/lstm1997/onnx.py) write one ONNX LSTM with direction="bidirectional" per layer.
#include "api.h"
#include "checks.h"
#include "layer_ops.h"
#include "step_rows.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <optional>
#include <vector>

namespace lstm1997 {

namespace {

void check_like(const std::optional<at::Tensor>& reverse, const char* reverse_name,
                const std::optional<at::Tensor>& forward, const char* forward_name) {
  const bool has_reverse = reverse.has_value() && reverse->defined();
  const bool has_forward = forward.has_value() && forward->defined();
  TORCH_CHECK(has_reverse == has_forward, "lstm1997: ", reverse_name, ": expected ",
              has_forward ? "a tensor" : "None", " (as ", forward_name, "), got ",
              has_reverse ? "a tensor" : "None");
  if (has_forward) {
    TORCH_CHECK(reverse->sym_sizes() == forward->sym_sizes(), "lstm1997: ", reverse_name,
                ": expected shape ", forward->sym_sizes(), " (the shape of ", forward_name,
                "), got ", reverse->sym_sizes());
  }
}

// h0 or s0: (2, batch, width), the two directions' states; the width is checked by lstm.
std::optional<at::Tensor> direction_state(const std::optional<at::Tensor>& state, const char* name,
                                          int64_t direction) {
  if (!state.has_value() || !state->defined()) {
    return std::nullopt;
  }
  TORCH_CHECK(state->dim() == 3 && state->sym_size(0) == 2, "lstm1997: ", name,
              ": expected shape (2, batch, width) (one state per direction), got ",
              state->sym_sizes());
  return state->select(0, direction);
}

// The rows that read packed input backwards: row (t, b) takes the row of sequence b at step
// length(b) - 1 - t. A permutation that is its own inverse.
at::Tensor packed_reverse_rows(LayerArgs args) {  // a copy: the check fills its sizes
  check_layer_args(args);
  const StepRows steps = step_rows(args);  // checks batch_sizes' values
  const std::vector<int64_t> lengths = sequence_lengths(steps);
  std::vector<int64_t> rows;
  rows.reserve(static_cast<size_t>(args.input.size(0)));
  for (int64_t t = 0; t < steps.steps(); ++t) {
    for (int64_t b = 0; b < steps.count[t]; ++b) {
      rows.push_back(steps.offset[lengths[b] - 1 - t] + b);
    }
  }
  return at::tensor(rows, at::kLong).to(args.input.device());
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_bidirectional(
    const at::Tensor& input, const at::Tensor& weight_ih, const at::Tensor& weight_hh,
    const std::optional<at::Tensor>& bias_ih, const std::optional<at::Tensor>& bias_hh,
    const at::Tensor& weight_ih_reverse, const at::Tensor& weight_hh_reverse,
    const std::optional<at::Tensor>& bias_ih_reverse,
    const std::optional<at::Tensor>& bias_hh_reverse, const std::optional<at::Tensor>& h0,
    const std::optional<at::Tensor>& s0, bool truncate, c10::string_view activation,
    const std::optional<at::Tensor>& batch_sizes, int64_t cells_per_block, bool gate_feedback) {
  const bool packed = batch_sizes.has_value() && batch_sizes->defined();
  TORCH_CHECK(input.defined(), "lstm1997: input: expected a tensor, got None");
  check_like(weight_ih_reverse, "weight_ih_reverse", weight_ih, "weight_ih");
  check_like(weight_hh_reverse, "weight_hh_reverse", weight_hh, "weight_hh");
  check_like(bias_ih_reverse, "bias_ih_reverse", bias_ih, "bias_ih");
  check_like(bias_hh_reverse, "bias_hh_reverse", bias_hh, "bias_hh");
  const LayerArgs forward_call = describe_lstm_args(
      input, weight_ih, weight_hh, bias_ih, bias_hh, direction_state(h0, "h0", 0),
      direction_state(s0, "s0", 0), truncate, activation, batch_sizes, cells_per_block,
      gate_feedback);
  const LayerOutputs forward = dispatch_lstm(forward_call);
  // lstm has checked the forward direction's call, batch_sizes included.
  std::optional<at::Tensor> packed_rows;  // the rows that read each packed sequence backwards
  if (packed) {
    TORCH_CHECK(!batch_sizes->is_meta(),
                "lstm1997: batch_sizes: expected a CPU tensor with values (lstm_bidirectional "
                "reads them to reverse each sequence), got a meta tensor");
    packed_rows = packed_reverse_rows(forward_call);
  }
  const auto reverse = [&packed_rows](const at::Tensor& t) {
    return packed_rows ? t.index_select(0, *packed_rows) : t.flip(0);
  };
  const LayerOutputs backward = dispatch_lstm(describe_lstm_args(
      reverse(input), weight_ih_reverse, weight_hh_reverse, bias_ih_reverse, bias_hh_reverse,
      direction_state(h0, "h0", 1), direction_state(s0, "s0", 1), truncate, activation,
      batch_sizes, cells_per_block, gate_feedback));
  return {at::cat({forward.output, reverse(backward.output)}, -1),
          at::stack({forward.h_n, backward.h_n}), at::stack({forward.s_n, backward.s_n})};
}

TORCH_LIBRARY_IMPL(lstm1997, CompositeImplicitAutograd, m) {
  m.impl("lstm_bidirectional", &lstm_bidirectional);
}

}  // namespace lstm1997
