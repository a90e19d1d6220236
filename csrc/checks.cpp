// Argument checks at the op boundary, shared by every backend and the meta kernels.
#include "lstm1997.h"

#include <c10/util/Exception.h>

namespace lstm1997 {

Activation parse_activation(c10::string_view name) {
  if (name == "tanh") {
    return Activation::Tanh;
  }
  if (name == "paper") {
    return Activation::Paper;
  }
  TORCH_CHECK_VALUE(false, "lstm1997: activation: expected \"tanh\" or \"paper\", got \"",
                    std::string(name), "\"");
}

namespace {

void check_floating(const at::Tensor& tensor, const char* name) {
  const auto dtype = tensor.scalar_type();
  TORCH_CHECK_TYPE(dtype == at::kFloat || dtype == at::kDouble, "lstm1997: ", name,
                   ": expected a float32 or float64 tensor, got ", dtype);
}

// Every tensor argument must share the input's dtype and device.
void check_same_kind(const at::Tensor& tensor, const char* name, const at::Tensor& input) {
  TORCH_CHECK_TYPE(tensor.scalar_type() == input.scalar_type(), "lstm1997: ", name,
                   ": expected dtype ", input.scalar_type(), " (the dtype of input), got ",
                   tensor.scalar_type());
  TORCH_CHECK(tensor.device() == input.device(), "lstm1997: ", name, ": expected device ",
              input.device(), " (the device of input), got ", tensor.device());
}

void check_shape(const at::Tensor& tensor, const char* name, c10::SymIntArrayRef expected,
                 const char* meaning) {
  TORCH_CHECK(tensor.sym_sizes() == expected, "lstm1997: ", name, ": expected shape ", expected,
              " ", meaning, ", got ", tensor.sym_sizes());
}

void check_optional(const std::optional<at::Tensor>& tensor, const char* name,
                    const at::Tensor& input, c10::SymIntArrayRef expected, const char* meaning) {
  if (tensor.has_value() && tensor->defined()) {
    check_same_kind(*tensor, name, input);
    check_shape(*tensor, name, expected, meaning);
  }
}

}  // namespace

LayerSizes check_forward_args(const at::Tensor& input, const at::Tensor& weight_ih,
                              const at::Tensor& weight_hh,
                              const std::optional<at::Tensor>& bias_ih,
                              const std::optional<at::Tensor>& bias_hh,
                              const std::optional<at::Tensor>& h0,
                              const std::optional<at::Tensor>& s0) {
  TORCH_CHECK(input.defined(), "lstm1997: input: expected a tensor, got None");
  TORCH_CHECK(weight_ih.defined(), "lstm1997: weight_ih: expected a tensor, got None");
  TORCH_CHECK(weight_hh.defined(), "lstm1997: weight_hh: expected a tensor, got None");
  TORCH_CHECK(input.dim() == 3,
              "lstm1997: input: expected a 3-D tensor (seq_len, batch, input_size), got ",
              input.dim(), "-D with shape ", input.sym_sizes());
  check_floating(input, "input");
  check_same_kind(weight_ih, "weight_ih", input);
  check_same_kind(weight_hh, "weight_hh", input);

  TORCH_CHECK(weight_hh.dim() == 2 && weight_hh.sym_size(1) > 0 &&
                  weight_hh.sym_size(0) == kNumGateBlocks * weight_hh.sym_size(1),
              "lstm1997: weight_hh: expected shape (3*hidden_size, hidden_size) with "
              "hidden_size > 0, rows in gate order (input gate, cell input, output gate), got ",
              weight_hh.sym_sizes());
  LayerSizes sizes{input.sym_size(0), input.sym_size(1), input.sym_size(2),
                   weight_hh.sym_size(1)};
  TORCH_CHECK(sizes.input_size > 0,
              "lstm1997: input: expected input_size (the last dimension) > 0, got shape ",
              input.sym_sizes());
  const c10::SymInt gate_rows = sizes.hidden_size * kNumGateBlocks;

  check_shape(weight_ih, "weight_ih", {gate_rows, sizes.input_size},
              "(3*hidden_size, input_size), with hidden_size from weight_hh and input_size from "
              "input");
  check_optional(bias_ih, "bias_ih", input, {gate_rows}, "(3*hidden_size,)");
  check_optional(bias_hh, "bias_hh", input, {gate_rows}, "(3*hidden_size,)");
  check_optional(h0, "h0", input, {sizes.batch, sizes.hidden_size}, "(batch, hidden_size)");
  check_optional(s0, "s0", input, {sizes.batch, sizes.hidden_size}, "(batch, hidden_size)");
  return sizes;
}

LayerSizes check_backward_args(const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                               const at::Tensor& grad_s_n, const at::Tensor& input,
                               const at::Tensor& weight_ih, const at::Tensor& weight_hh,
                               const std::optional<at::Tensor>& h0, const at::Tensor& output,
                               const at::Tensor& cell_state, const at::Tensor& gates) {
  const LayerSizes sizes =
      check_forward_args(input, weight_ih, weight_hh, std::nullopt, std::nullopt, h0, std::nullopt);
  const c10::SymInt T = sizes.seq_len, B = sizes.batch, H = sizes.hidden_size;
  const std::pair<const at::Tensor*, const char*> per_step[] = {
      {&grad_output, "grad_output"}, {&output, "output"}, {&cell_state, "cell_state"}};
  for (const auto& [tensor, name] : per_step) {
    TORCH_CHECK(tensor->defined(), "lstm1997: ", name, ": expected a tensor, got None");
    check_same_kind(*tensor, name, input);
    check_shape(*tensor, name, {T, B, H}, "(seq_len, batch, hidden_size)");
  }
  const std::pair<const at::Tensor*, const char*> final_state[] = {{&grad_h_n, "grad_h_n"},
                                                                   {&grad_s_n, "grad_s_n"}};
  for (const auto& [tensor, name] : final_state) {
    TORCH_CHECK(tensor->defined(), "lstm1997: ", name, ": expected a tensor, got None");
    check_same_kind(*tensor, name, input);
    check_shape(*tensor, name, {B, H}, "(batch, hidden_size)");
  }
  TORCH_CHECK(gates.defined(), "lstm1997: gates: expected a tensor, got None");
  check_same_kind(gates, "gates", input);
  check_shape(gates, "gates", {T, B, H * kNumGateBlocks}, "(seq_len, batch, 3*hidden_size)");
  return sizes;
}

}  // namespace lstm1997
