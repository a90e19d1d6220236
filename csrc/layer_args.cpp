#include "layer_args.h"

#include <c10/util/Exception.h>

#include <string>

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

c10::string_view activation_name(Activation activation) {
  return activation == Activation::Tanh ? "tanh" : "paper";
}

c10::IValue LayerOptions::to_ivalue() const {
  return c10::ivalue::Tuple::create(
      {truncate, std::string(activation_name(activation)), cells_per_block, gate_feedback});
}

LayerOptions LayerOptions::from_ivalue(const c10::IValue& value) {
  const auto& fields = value.toTupleRef().elements();
  LayerOptions options;
  options.truncate = fields[0].toBool();
  options.activation = parse_activation(fields[1].toStringRef());
  options.cells_per_block = fields[2].toInt();
  options.gate_feedback = fields[3].toBool();
  return options;
}

}  // namespace lstm1997
