// Argument checks at the op boundary, shared by every backend and the meta kernels.
#include "checks.h"

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <string>

namespace lstm1997 {

namespace {

void check_floating(const at::Tensor& tensor, const char* name) {
  const auto dtype = tensor.scalar_type();
  TORCH_CHECK_TYPE(
      dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf || dtype == at::kBFloat16,
      "lstm1997: ", name, ": expected a float64, float32, float16 or bfloat16 tensor, got ", dtype);
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
  if (present(tensor)) {
    check_same_kind(*tensor, name, input);
    check_shape(*tensor, name, expected, meaning);
  }
}

void check_required(const at::Tensor& tensor, const char* name, const at::Tensor& input,
                    c10::SymIntArrayRef expected, const char* meaning) {
  TORCH_CHECK(tensor.defined(), "lstm1997: ", name, ": expected a tensor, got None");
  check_same_kind(tensor, name, input);
  check_shape(tensor, name, expected, meaning);
}

// The traces of the online ops: (B, 2H, I), (B, 2H, R) and (B, 2H), of the reference's kind.
void check_traces(const at::Tensor& trace_ih, const at::Tensor& trace_hh,
                  const at::Tensor& trace_bias, const at::Tensor& reference, const c10::SymInt& B,
                  const c10::SymInt& H, const c10::SymInt& I, const c10::SymInt& R,
                  bool gate_feedback) {
  check_required(trace_ih, "trace_ih", reference, {B, 2 * H, I},
                 "(batch, 2*hidden_size, input_size)");
  check_required(trace_hh, "trace_hh", reference, {B, 2 * H, R},
                 gate_feedback ? "(batch, 2*hidden_size, K + H + K) with gate_feedback"
                               : "(batch, 2*hidden_size, hidden_size)");
  check_required(trace_bias, "trace_bias", reference, {B, 2 * H}, "(batch, 2*hidden_size)");
}

const char* per_step_meaning(const LayerSizes& sizes) {
  return sizes.packed ? "(packed rows, hidden_size)" : "(seq_len, batch, hidden_size)";
}

}  // namespace

c10::SymDimVector per_step_shape(const LayerSizes& sizes, const c10::SymInt& width) {
  if (sizes.packed) {
    return {sizes.rows, width};
  }
  return {sizes.seq_len, sizes.batch, width};
}

namespace {

// Checks and sizes common to forward and backward. Packed input carries no batch size that
// tracing could read (it is batch_sizes[0]), so it is taken from `batch_source` (h0 forward,
// grad_h_n backward), a tensor of shape (batch, hidden_size) required with packed input.
LayerSizes check_layer(const LayerArgs& args, const std::optional<at::Tensor>& batch_source,
                       const char* batch_source_name) {
  const at::Tensor &input = args.input, &weight_ih = args.weight_ih, &weight_hh = args.weight_hh;
  const int64_t cells_per_block = args.options.cells_per_block;
  TORCH_CHECK(input.defined(), "lstm1997: input: expected a tensor, got None");
  TORCH_CHECK(weight_ih.defined(), "lstm1997: weight_ih: expected a tensor, got None");
  TORCH_CHECK(weight_hh.defined(), "lstm1997: weight_hh: expected a tensor, got None");
  LayerSizes sizes;
  sizes.packed = present(args.batch_sizes);
  if (sizes.packed) {
    const at::Tensor& batch_sizes = *args.batch_sizes;
    TORCH_CHECK(input.dim() == 2,
                "lstm1997: input: expected a 2-D tensor (packed rows, input_size) with "
                "batch_sizes, got ",
                input.dim(), "-D with shape ", input.sym_sizes());
    // Kernels read batch_sizes on the host (step_rows.h). The meta kernels, which do not read it,
    // get it on meta: fake-tensor tracing (torch.compile, torch.export) turns every tensor of a
    // call into a meta tensor.
    TORCH_CHECK(batch_sizes.dim() == 1 && batch_sizes.scalar_type() == at::kLong &&
                    (batch_sizes.device().is_cpu() || (batch_sizes.is_meta() && input.is_meta())),
                "lstm1997: batch_sizes: expected a 1-D int64 CPU tensor (as in a "
                "PackedSequence), got a ",
                batch_sizes.dim(), "-D ", batch_sizes.scalar_type(), " tensor on ",
                batch_sizes.device());
    TORCH_CHECK(present(batch_source) && batch_source->dim() == 2, "lstm1997: ",
                batch_source_name,
                ": expected a tensor of shape (batch, hidden_size) with batch_sizes (packed "
                "input), got ",
                present(batch_source) ? "a " : "None",
                present(batch_source) ? std::to_string(batch_source->dim()) + "-D tensor" : "");
    sizes.rows = input.sym_size(0);
    sizes.seq_len = batch_sizes.sym_size(0);
    sizes.batch = batch_source->sym_size(0);
    sizes.input_size = input.sym_size(1);
  } else {
    TORCH_CHECK(input.dim() == 3,
                "lstm1997: input: expected a 3-D tensor (seq_len, batch, input_size), got ",
                input.dim(), "-D with shape ", input.sym_sizes());
    sizes.seq_len = input.sym_size(0);
    sizes.batch = input.sym_size(1);
    sizes.input_size = input.sym_size(2);
    sizes.rows = sizes.seq_len * sizes.batch;
  }
  check_floating(input, "input");
  check_same_kind(weight_ih, "weight_ih", input);
  check_same_kind(weight_hh, "weight_hh", input);
  TORCH_CHECK_VALUE(cells_per_block >= 1,
                    "lstm1997: cells_per_block: expected a positive number of cells per memory "
                    "cell block, got ", cells_per_block);
  if (args.options.gate_feedback) {
    // Gate rows G = K + H + K = K (S + 2) and, with the gates fed back, as many columns.
    TORCH_CHECK(weight_hh.dim() == 2 && weight_hh.sym_size(0) > 0 &&
                    weight_hh.sym_size(0) % (cells_per_block + 2) == 0 &&
                    weight_hh.sym_size(1) == weight_hh.sym_size(0),
                "lstm1997: weight_hh: expected shape (K + H + K, H + 2K) with gate_feedback (the "
                "recurrent input is [input gates (K) | cell outputs (H) | output gates (K)] of "
                "t-1, K = H / cells_per_block = H / ", cells_per_block,
                "): a square matrix whose side is a multiple of cells_per_block + 2, got ",
                weight_hh.sym_sizes());
    sizes.hidden_size = weight_hh.sym_size(0) / (cells_per_block + 2) * cells_per_block;
  } else {
    TORCH_CHECK(weight_hh.dim() == 2 && weight_hh.sym_size(1) > 0,
                "lstm1997: weight_hh: expected shape (gate rows, hidden_size), 2-D with "
                "hidden_size > 0, got ", weight_hh.sym_sizes());
    sizes.hidden_size = weight_hh.sym_size(1);
    TORCH_CHECK_VALUE(sizes.hidden_size % cells_per_block == 0,
                      "lstm1997: cells_per_block: expected a divisor of hidden_size (",
                      sizes.hidden_size, ", the columns of weight_hh), got ", cells_per_block);
  }
  sizes.gate_rows = gate_rows(sizes.hidden_size, cells_per_block);
  sizes.recurrent_size =
      recurrent_width(sizes.hidden_size, cells_per_block, args.options.gate_feedback);
  // The messages' words for the gate rows, built only when a check fails (every op call runs
  // these checks; a std::string built per call is a heap allocation per call).
  const auto gate_rows_meaning = [cells_per_block] {
    return cells_per_block == 1
               ? std::string("3*hidden_size")
               : "hidden_size + 2*hidden_size/cells_per_block with cells_per_block = " +
                     std::to_string(cells_per_block);
  };
  TORCH_CHECK(weight_hh.sym_size(0) == sizes.gate_rows, "lstm1997: weight_hh: expected shape (",
              gate_rows_meaning(), ", hidden_size) = (", sizes.gate_rows, ", ", sizes.hidden_size,
              "), rows in gate order (input gate, cell input, output gate), got ",
              weight_hh.sym_sizes(),
              " (with the paper's gate feedback, pass gate_feedback=True: then (K + H + K, "
              "H + 2K))");
  TORCH_CHECK(sizes.input_size > 0,
              "lstm1997: input: expected input_size (the last dimension) > 0, got shape ",
              input.sym_sizes());
  const c10::SymInt weight_ih_shape[] = {sizes.gate_rows, sizes.input_size};
  if (weight_ih.sym_sizes() != c10::SymIntArrayRef(weight_ih_shape)) {
    const std::string weight_ih_meaning =
        "(" + gate_rows_meaning() +
        ", input_size), with hidden_size from weight_hh and input_size from input";
    check_shape(weight_ih, "weight_ih", weight_ih_shape, weight_ih_meaning.c_str());
  }
  return sizes;
}

LayerOptions make_options(bool truncate, c10::string_view activation, int64_t cells_per_block,
                          bool gate_feedback) {
  LayerOptions options;
  options.truncate = truncate;
  options.activation = parse_activation(activation);
  options.cells_per_block = cells_per_block;
  options.gate_feedback = gate_feedback;
  return options;
}

// The expected shape of h0 (and grad_h_n): the recurrent state.
const char* recurrent_meaning(const LayerOptions& options) {
  return options.gate_feedback ? "(batch, K + H + K): with gate_feedback the recurrent state is "
                                 "[input gates | cell outputs | output gates]"
                               : "(batch, hidden_size)";
}

}  // namespace

LayerArgs describe_lstm_args(const at::Tensor& input, const at::Tensor& weight_ih,
                             const at::Tensor& weight_hh, const std::optional<at::Tensor>& bias_ih,
                             const std::optional<at::Tensor>& bias_hh,
                             const std::optional<at::Tensor>& h0,
                             const std::optional<at::Tensor>& s0, bool truncate,
                             c10::string_view activation,
                             const std::optional<at::Tensor>& batch_sizes,
                             int64_t cells_per_block, bool gate_feedback) {
  return LayerArgs{input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0, batch_sizes,
                   make_options(truncate, activation, cells_per_block, gate_feedback)};
}

void check_layer_args(LayerArgs& args) {
  const at::Tensor& input = args.input;
  const std::optional<at::Tensor> &bias_ih = args.bias_ih, &bias_hh = args.bias_hh,
                                  &h0 = args.h0, &s0 = args.s0;
  const int64_t cells_per_block = args.options.cells_per_block;
  const LayerSizes& sizes = args.sizes = check_layer(args, h0, "h0");
  TORCH_CHECK(!sizes.packed || present(s0),
              "lstm1997: s0: expected a tensor of shape (batch, hidden_size) with batch_sizes "
              "(packed input), got None");
  const char* bias_meaning = cells_per_block == 1 ? "(3*hidden_size,)" : "(the rows of weight_hh,)";
  check_optional(bias_ih, "bias_ih", input, {sizes.gate_rows}, bias_meaning);
  check_optional(bias_hh, "bias_hh", input, {sizes.gate_rows}, bias_meaning);
  check_optional(h0, "h0", input, {sizes.batch, sizes.recurrent_size},
                 recurrent_meaning(args.options));
  check_optional(s0, "s0", input, {sizes.batch, sizes.hidden_size}, "(batch, hidden_size)");
}

LayerArgs check_forward_args(const at::Tensor& input, const at::Tensor& weight_ih,
                             const at::Tensor& weight_hh, const std::optional<at::Tensor>& bias_ih,
                             const std::optional<at::Tensor>& bias_hh,
                             const std::optional<at::Tensor>& h0,
                             const std::optional<at::Tensor>& s0, c10::string_view activation,
                             const std::optional<at::Tensor>& batch_sizes,
                             int64_t cells_per_block, bool gate_feedback) {
  LayerArgs args = describe_lstm_args(input, weight_ih, weight_hh, bias_ih, bias_hh, h0, s0,
                                      LayerOptions().truncate, activation, batch_sizes,
                                      cells_per_block, gate_feedback);
  check_layer_args(args);
  return args;
}

BackwardArgs check_backward_args(const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                                 const at::Tensor& grad_s_n, const at::Tensor& input,
                                 const at::Tensor& weight_ih, const at::Tensor& weight_hh,
                                 const std::optional<at::Tensor>& h0, const at::Tensor& output,
                                 const at::Tensor& squashed_state, const at::Tensor& gates,
                                 bool truncate, c10::string_view activation,
                                 const std::optional<at::Tensor>& batch_sizes,
                                 std::array<bool, 4> output_mask, int64_t cells_per_block,
                                 bool gate_feedback) {
  BackwardArgs args;
  args.grad_output = grad_output;
  args.grad_h_n = grad_h_n;
  args.grad_s_n = grad_s_n;
  args.layer = LayerArgs{input, weight_ih, weight_hh, std::nullopt, std::nullopt, h0,
                         std::nullopt, batch_sizes,
                         make_options(truncate, activation, cells_per_block, gate_feedback)};
  args.saved = SavedForward{output, squashed_state, gates};
  args.wanted = GradientMask{output_mask[0], output_mask[1], output_mask[2], output_mask[3]};
  const LayerSizes& sizes = args.layer.sizes = check_layer(args.layer, grad_h_n, "grad_h_n");
  const c10::SymInt& H = sizes.hidden_size;
  const auto per_step = per_step_shape(sizes, H);
  const char* meaning = per_step_meaning(sizes);
  check_required(grad_output, "grad_output", input, per_step, meaning);
  check_required(output, "output", input, per_step, meaning);
  check_required(squashed_state, "squashed_state", input, per_step, meaning);
  check_required(gates, "gates", input, per_step_shape(sizes, H * kNumGates),
                 sizes.packed ? "(packed rows, 3*hidden_size)" : "(seq_len, batch, 3*hidden_size)");
  const char* recurrent = recurrent_meaning(args.layer.options);
  check_required(grad_h_n, "grad_h_n", input, {sizes.batch, sizes.recurrent_size}, recurrent);
  check_required(grad_s_n, "grad_s_n", input, {sizes.batch, H}, "(batch, hidden_size)");
  check_optional(h0, "h0", input, {sizes.batch, sizes.recurrent_size}, recurrent);
  return args;
}

BackwardArgs check_net_error_args(const at::Tensor& grad_output, const at::Tensor& grad_h_n,
                                  const at::Tensor& grad_s_n, const at::Tensor& input,
                                  const at::Tensor& weight_ih, const at::Tensor& weight_hh,
                                  const std::optional<at::Tensor>& h0, const at::Tensor& output,
                                  const at::Tensor& squashed_state, const at::Tensor& gates,
                                  bool truncate, c10::string_view activation,
                                  const std::optional<at::Tensor>& batch_sizes,
                                  int64_t cells_per_block, bool gate_feedback) {
  return check_backward_args(grad_output, grad_h_n, grad_s_n, input, weight_ih, weight_hh, h0,
                             output, squashed_state, gates, truncate, activation, batch_sizes,
                             {false, false, false, false}, cells_per_block, gate_feedback);
}

c10::SymInt check_online_args(const at::Tensor& input, const std::optional<at::Tensor>& h0,
                              const at::Tensor& output, const at::Tensor& gates,
                              const at::Tensor& trace_ih, const at::Tensor& trace_hh,
                              const at::Tensor& trace_bias, int64_t cells_per_block,
                              bool gate_feedback) {
  TORCH_CHECK(input.defined() && input.dim() == 3,
              "lstm1997: input: expected a 3-D tensor (seq_len, batch, input_size) (online ops "
              "take dense chunks), got ",
              input.defined() ? std::to_string(input.dim()) + "-D" : std::string("None"));
  check_floating(input, "input");
  TORCH_CHECK(output.defined() && output.dim() == 3,
              "lstm1997: output: expected a 3-D tensor (seq_len, batch, hidden_size)");
  const c10::SymInt T = input.sym_size(0), B = input.sym_size(1), I = input.sym_size(2),
                    H = output.sym_size(2);
  TORCH_CHECK(H > 0, "lstm1997: output: expected hidden_size > 0, got shape ", output.sym_sizes());
  TORCH_CHECK_VALUE(cells_per_block >= 1 && H % cells_per_block == 0,
                    "lstm1997: cells_per_block: expected a positive divisor of hidden_size (", H,
                    ", the last dimension of output), got ", cells_per_block);
  const c10::SymInt R = recurrent_width(H, cells_per_block, gate_feedback);
  LayerOptions options;
  options.gate_feedback = gate_feedback;
  check_required(output, "output", input, {T, B, H}, "(seq_len, batch, hidden_size)");
  check_required(gates, "gates", input, {T, B, kNumGates * H},
                 "(seq_len, batch, 3*hidden_size)");
  check_optional(h0, "h0", input, {B, R}, recurrent_meaning(options));
  check_traces(trace_ih, trace_hh, trace_bias, input, B, H, I, R, gate_feedback);
  return R;
}

namespace {

// Given, with plain sizes: the usual-call predicates read sizes as integers, and leave
// symbolic ones (fake tensors under torch.compile, through the ATen implementation) to the full
// checks.
bool concrete(const at::Tensor& tensor) {
  return tensor.defined() && !tensor.unsafeGetTensorImpl()->has_symbolic_sizes_strides();
}

// What the usual-call predicates ask of every tensor: given, of `like`'s dtype and device, and
// of the given shape.
bool usual_tensor(const at::Tensor& tensor, const at::Tensor& like,
                  std::initializer_list<int64_t> shape) {
  return concrete(tensor) && tensor.scalar_type() == like.scalar_type() &&
         tensor.device() == like.device() && tensor.sizes().equals(shape);
}

bool usual_options(c10::string_view activation, int64_t cells_per_block) {
  return (activation == "tanh" || activation == "paper") && cells_per_block >= 1;
}

bool usual_dtype(const at::Tensor& tensor) {
  return concrete(tensor) &&
         (tensor.scalar_type() == at::kFloat || tensor.scalar_type() == at::kDouble);
}

LayerSizes step_sizes(int64_t B, int64_t I, int64_t H, int64_t R, int64_t G) {
  LayerSizes sizes;
  sizes.seq_len = 1;
  sizes.batch = B;
  sizes.rows = B;
  sizes.input_size = I;
  sizes.hidden_size = H;
  sizes.recurrent_size = R;
  sizes.gate_rows = G;
  return sizes;
}

std::optional<LayerSizes> usual_online_forward_sizes(
    const at::Tensor& hidden, const at::Tensor& cell_state, const at::Tensor& step_input,
    const at::Tensor& previous, const at::Tensor& squashed_state, const at::Tensor& gates,
    const at::Tensor& input, const at::Tensor& weight_ih, const at::Tensor& weight_hh,
    const std::optional<at::Tensor>& bias_ih, const std::optional<at::Tensor>& bias_hh,
    c10::string_view activation, int64_t cells_per_block, bool gate_feedback) {
  const int64_t S = cells_per_block;
  if (!usual_options(activation, S) || !usual_dtype(input) || !concrete(weight_hh) ||
      weight_hh.dim() != 2) {
    return std::nullopt;
  }
  const int64_t dim = input.dim();
  if (dim != 2 && !(dim == 3 && input.size(0) == 1)) {
    return std::nullopt;
  }
  const int64_t B = input.size(dim - 2), I = input.size(dim - 1);
  // hidden_size as check_layer reads it off weight_hh.
  int64_t H = 0;
  if (gate_feedback) {
    const int64_t side = weight_hh.size(0);
    if (side <= 0 || side % (S + 2) != 0) {
      return std::nullopt;
    }
    H = side / (S + 2) * S;
  } else {
    H = weight_hh.size(1);
  }
  if (H <= 0 || H % S != 0 || I <= 0) {
    return std::nullopt;
  }
  const int64_t G = gate_rows(H, S), R = recurrent_width(H, S, gate_feedback);
  const auto bias_usual = [&](const std::optional<at::Tensor>& bias) {
    return !present(bias) || usual_tensor(*bias, input, {G});
  };
  if (!usual_tensor(weight_ih, input, {G, I}) || !usual_tensor(weight_hh, input, {G, R}) ||
      !bias_usual(bias_ih) || !bias_usual(bias_hh) || !usual_tensor(hidden, input, {B, R}) ||
      !usual_tensor(cell_state, input, {B, H}) || !usual_tensor(step_input, input, {B, I}) ||
      !usual_tensor(previous, input, {B, R}) || !usual_tensor(squashed_state, input, {B, H}) ||
      !usual_tensor(gates, input, {B, kNumGates * H})) {
    return std::nullopt;
  }
  return step_sizes(B, I, H, R, G);
}

std::optional<LayerSizes> usual_online_update_sizes(
    const at::Tensor& trace_ih, const at::Tensor& trace_hh, const at::Tensor& trace_bias,
    const at::Tensor& target_weight_ih, const at::Tensor& target_weight_hh,
    const at::Tensor& target_bias_ih, const at::Tensor& target_bias_hh,
    const std::optional<at::Tensor>& grad_output,
    const at::Tensor& step_input, const at::Tensor& previous, const at::Tensor& squashed_state,
    const at::Tensor& gates, c10::string_view activation, int64_t cells_per_block,
    bool gate_feedback) {
  const int64_t S = cells_per_block;
  if (!usual_options(activation, S) || !usual_dtype(step_input) || step_input.dim() != 2 ||
      !concrete(squashed_state) || squashed_state.dim() != 2) {
    return std::nullopt;
  }
  const int64_t B = step_input.size(0), I = step_input.size(1), H = squashed_state.size(1);
  if (H <= 0 || H % S != 0) {
    return std::nullopt;
  }
  const int64_t G = gate_rows(H, S), R = recurrent_width(H, S, gate_feedback);
  const at::Tensor& like = step_input;
  const auto grad_output_usual = [&] {
    if (!present(grad_output)) {
      return true;
    }
    return grad_output->dim() == 3 ? usual_tensor(*grad_output, like, {1, B, H})
                                   : usual_tensor(*grad_output, like, {B, H});
  };
  // A target is given with its shape, or empty (left alone).
  const auto target_usual = [&](const at::Tensor& target, std::initializer_list<int64_t> shape) {
    return concrete(target) && (target.numel() == 0 || usual_tensor(target, like, shape));
  };
  if (!usual_tensor(squashed_state, like, {B, H}) ||
      !usual_tensor(gates, like, {B, kNumGates * H}) || !usual_tensor(previous, like, {B, R}) ||
      !grad_output_usual() || !usual_tensor(trace_ih, like, {B, 2 * H, I}) ||
      !usual_tensor(trace_hh, like, {B, 2 * H, R}) ||
      !usual_tensor(trace_bias, like, {B, 2 * H}) || !target_usual(target_weight_ih, {G, I}) ||
      !target_usual(target_weight_hh, {G, R}) || !target_usual(target_bias_ih, {G}) ||
      !target_usual(target_bias_hh, {G})) {
    return std::nullopt;
  }
  return step_sizes(B, I, H, R, G);
}

}  // namespace

LayerArgs check_online_forward_args(
    const at::Tensor& hidden, const at::Tensor& cell_state, const at::Tensor& step_input,
    const at::Tensor& previous, const at::Tensor& squashed_state, const at::Tensor& gates,
    const at::Tensor& input, const at::Tensor& weight_ih, const at::Tensor& weight_hh,
    const std::optional<at::Tensor>& bias_ih, const std::optional<at::Tensor>& bias_hh,
    c10::string_view activation, int64_t cells_per_block, bool gate_feedback) {
  TORCH_CHECK(input.defined() && (input.dim() == 2 || (input.dim() == 3 && input.sym_size(0) == 1)),
              "lstm1997: input: expected one step, a 2-D tensor (batch, input_size) or a chunk of "
              "one (1, batch, input_size), got ",
              input.defined() ? std::to_string(input.dim()) + "-D tensor" : std::string("None"),
              input.defined() ? " of shape " + c10::str(input.sym_sizes()) : std::string());
  LayerArgs args =
      check_forward_args(input.dim() == 3 ? input : input.unsqueeze(0), weight_ih, weight_hh, bias_ih, bias_hh, std::nullopt,
                         std::nullopt, activation, std::nullopt, cells_per_block, gate_feedback);
  const LayerSizes& sizes = args.sizes;
  const c10::SymInt &B = sizes.batch, &H = sizes.hidden_size, &R = sizes.recurrent_size;
  check_required(hidden, "hidden", input, {B, R}, recurrent_meaning(args.options));
  check_required(cell_state, "cell_state", input, {B, H}, "(batch, hidden_size)");
  check_required(step_input, "step_input", input, {B, sizes.input_size},
                 "(batch, input_size)");
  check_required(previous, "previous", input, {B, R}, recurrent_meaning(args.options));
  check_required(squashed_state, "squashed_state", input, {B, H}, "(batch, hidden_size)");
  check_required(gates, "gates", input, {B, kNumGates * H}, "(batch, 3*hidden_size)");
  args.h0 = hidden;
  args.s0 = cell_state;
  return args;
}

LayerSizes check_online_update_args(
    const at::Tensor& trace_ih, const at::Tensor& trace_hh, const at::Tensor& trace_bias,
    const at::Tensor& target_weight_ih, const at::Tensor& target_weight_hh,
    const at::Tensor& target_bias_ih, const at::Tensor& target_bias_hh,
    const std::optional<at::Tensor>& grad_output,
    const at::Tensor& step_input, const at::Tensor& previous, const at::Tensor& squashed_state,
    const at::Tensor& gates, c10::string_view activation, int64_t cells_per_block,
    bool gate_feedback) {
  if (std::optional<LayerSizes> usual = usual_online_update_sizes(
          trace_ih, trace_hh, trace_bias, target_weight_ih, target_weight_hh, target_bias_ih,
          target_bias_hh, grad_output, step_input, previous, squashed_state, gates, activation,
          cells_per_block, gate_feedback)) {
    return std::move(*usual);
  }
  TORCH_CHECK(step_input.defined() && step_input.dim() == 2,
              "lstm1997: step_input: expected a 2-D tensor (batch, input_size), got ",
              step_input.defined() ? std::to_string(step_input.dim()) + "-D" : std::string("None"));
  check_floating(step_input, "step_input");
  TORCH_CHECK(squashed_state.defined() && squashed_state.dim() == 2,
              "lstm1997: squashed_state: expected a 2-D tensor (batch, hidden_size)");
  LayerOptions options;
  options.activation = parse_activation(activation);
  options.cells_per_block = cells_per_block;
  options.gate_feedback = gate_feedback;
  LayerSizes sizes;
  sizes.seq_len = 1;
  sizes.batch = step_input.sym_size(0);
  sizes.rows = sizes.batch;
  sizes.input_size = step_input.sym_size(1);
  sizes.hidden_size = squashed_state.sym_size(1);
  const c10::SymInt &B = sizes.batch, &I = sizes.input_size, &H = sizes.hidden_size;
  TORCH_CHECK(H > 0, "lstm1997: squashed_state: expected hidden_size > 0, got shape ",
              squashed_state.sym_sizes());
  TORCH_CHECK_VALUE(cells_per_block >= 1 && H % cells_per_block == 0,
                    "lstm1997: cells_per_block: expected a positive divisor of hidden_size (", H,
                    ", the last dimension of squashed_state), got ", cells_per_block);
  sizes.recurrent_size = recurrent_width(H, cells_per_block, gate_feedback);
  sizes.gate_rows = gate_rows(H, cells_per_block);
  const c10::SymInt &R = sizes.recurrent_size, &G = sizes.gate_rows;
  check_required(squashed_state, "squashed_state", step_input, {B, H}, "(batch, hidden_size)");
  check_required(gates, "gates", step_input, {B, kNumGates * H}, "(batch, 3*hidden_size)");
  check_required(previous, "previous", step_input, {B, R}, recurrent_meaning(options));
  if (present(grad_output) && grad_output->dim() == 3) {  // a chunk of one step's
    check_required(*grad_output, "grad_output", step_input, {1, B, H}, "(1, batch, hidden_size)");
  } else {
    check_optional(grad_output, "grad_output", step_input, {B, H}, "(batch, hidden_size)");
  }
  check_traces(trace_ih, trace_hh, trace_bias, step_input, B, H, I, R, gate_feedback);
  const at::Tensor* targets[4] = {&target_weight_ih, &target_weight_hh, &target_bias_ih,
                                  &target_bias_hh};
  const char* names[4] = {"target_weight_ih", "target_weight_hh", "target_bias_ih",
                          "target_bias_hh"};
  const c10::SymDimVector shapes[4] = {{G, I}, {G, R}, {G}, {G}};
  const char* meanings[4] = {"(gate_rows, input_size) or empty",
                             "(gate_rows, recurrent width) or empty", "(gate_rows) or empty",
                             "(gate_rows) or empty"};
  for (size_t k = 0; k < 4; ++k) {
    if (targets[k]->sym_numel() != 0) {
      check_required(*targets[k], names[k], step_input, shapes[k], meanings[k]);
    }
  }
  return sizes;
}

LayerSizes check_online_forward_sizes(
    const at::Tensor& hidden, const at::Tensor& cell_state, const at::Tensor& step_input,
    const at::Tensor& previous, const at::Tensor& squashed_state, const at::Tensor& gates,
    const at::Tensor& input, const at::Tensor& weight_ih, const at::Tensor& weight_hh,
    const std::optional<at::Tensor>& bias_ih, const std::optional<at::Tensor>& bias_hh,
    c10::string_view activation, int64_t cells_per_block, bool gate_feedback) {
  if (std::optional<LayerSizes> usual = usual_online_forward_sizes(
          hidden, cell_state, step_input, previous, squashed_state, gates, input, weight_ih,
          weight_hh, bias_ih, bias_hh, activation, cells_per_block, gate_feedback)) {
    return std::move(*usual);
  }
  return check_online_forward_args(hidden, cell_state, step_input, previous, squashed_state,
                                   gates, input, weight_ih, weight_hh, bias_ih, bias_hh,
                                   activation, cells_per_block, gate_feedback)
      .sizes;
}

}  // namespace lstm1997
