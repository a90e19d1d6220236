// C++ tests of the lstm1997 op library, run by ctest as `lstm1997_cpp_tests CASE FIXTURES_DIR`.
// Fixtures (inputs and the values expected of them) come from cpp/make_fixtures.py.
#include "api.h"

#include <torch/script.h>
#include <torch/torch.h>

#include <functional>
#include <iostream>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace {

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void expect(bool condition, const std::string& what) {
  if (!condition) {
    throw Failure(what);
  }
}

void expect_close(const at::Tensor& actual, const at::Tensor& expected, double tolerance,
                  const std::string& what) {
  expect(actual.sizes() == expected.sizes(), what + ": shape " + c10::str(actual.sizes()) +
                                                 " != " + c10::str(expected.sizes()));
  const double error = (actual - expected).abs().max().item<double>();
  expect(error <= tolerance, what + ": max abs error " + std::to_string(error) + " > " +
                                 std::to_string(tolerance));
}

// Tensors saved by make_fixtures.py as the buffers of a scripted module.
struct Fixture {
  torch::jit::Module module;
  explicit Fixture(const std::string& path) : module(torch::jit::load(path)) {}
  at::Tensor operator[](const std::string& name) const { return module.attr(name).toTensor(); }
};

// A model saved from Python runs in C++ and gives Python's outputs.
void load_model(const std::string& dir) {
  torch::jit::Module model = torch::jit::load(dir + "/model.pt");
  model.eval();
  const Fixture io(dir + "/model_io.pt");
  const auto result = model.forward({io["x"]}).toTuple();
  const auto state = result->elements()[1].toTuple();
  expect_close(result->elements()[0].toTensor(), io["output"], 1e-5, "output");
  expect_close(state->elements()[0].toTensor(), io["h_n"], 1e-5, "h_n");
  expect_close(state->elements()[1].toTensor(), io["s_n"], 1e-5, "s_n");
}

// backward() in C++ through the op's C++ autograd: the truncated gradients are the exact ones
// minus the error that flowed through h_{t-1}, both equal to the Python reference loop's; for
// plain cells (op.pt), for memory cell blocks of 2 cells (op_blocks.pt), and for those with the
// paper's gate feedback (op_feedback.pt).
void op_gradients_of(const std::string& path, int64_t cells_per_block, bool gate_feedback) {
  const Fixture f(path);
  const std::vector<std::string> names = {"input", "weight_ih", "weight_hh", "bias_ih",
                                          "bias_hh", "h0",        "s0"};
  std::map<std::string, at::Tensor> grads[2];
  for (const bool truncate : {true, false}) {
    std::map<std::string, at::Tensor> leaves;
    for (const auto& name : names) {
      leaves[name] = f[name].clone().requires_grad_();
    }
    auto [output, h_n, s_n] =
        lstm1997::lstm(leaves["input"], leaves["weight_ih"], leaves["weight_hh"],
                       leaves["bias_ih"], leaves["bias_hh"], leaves["h0"], leaves["s0"], truncate,
                       "tanh", std::nullopt, cells_per_block, gate_feedback);
    expect_close(output, f["output"], 1e-12, "output");
    const at::Tensor loss = (output * f["grad_output"]).sum() + (h_n * f["grad_h_n"]).sum() +
                            (s_n * f["grad_s_n"]).sum();
    loss.backward();
    const std::string mode = truncate ? "truncated" : "exact";
    for (const auto& name : names) {
      expect_close(leaves[name].grad(), f[mode + "_" + name], 1e-10, mode + " grad of " + name);
      grads[truncate][name] = leaves[name].grad();
    }
  }
  for (const auto& name : {"weight_hh", "input", "h0"}) {
    const double removed = (grads[false][name] - grads[true][name]).abs().max().item<double>();
    expect(removed > 1e-6, std::string("truncation removed nothing from the grad of ") + name);
  }
  expect(grads[true]["h0"].abs().max().item<double>() == 0.0,
         "truncated grad of h0 must be zero (h0 enters only through the recurrent product)");
}

void op_gradients(const std::string& dir) {
  op_gradients_of(dir + "/op.pt", 1, false);
  op_gradients_of(dir + "/op_blocks.pt", 2, false);
  op_gradients_of(dir + "/op_feedback.pt", 2, true);
}

// A scripted model trains from C++: plain SGD steps lower its loss.
void train_steps(const std::string& dir) {
  torch::jit::Module model = torch::jit::load(dir + "/train_model.pt");
  model.train();
  const Fixture data(dir + "/train.pt");
  std::vector<at::Tensor> parameters;
  for (const auto& parameter : model.parameters()) {
    parameters.push_back(parameter);
  }
  torch::optim::SGD optimizer(parameters, torch::optim::SGDOptions(0.1));
  double first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    optimizer.zero_grad();
    const at::Tensor prediction = model.forward({data["x"]}).toTensor();
    const at::Tensor loss = (prediction - data["target"]).pow(2).mean();
    loss.backward();
    optimizer.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  std::cout << "loss " << first << " -> " << last << "\n";
  expect(last < 0.25 * first, "60 SGD steps did not lower the loss to a quarter");
}

// Bad arguments to the C++ API throw c10::Error naming the argument.
void bad_arguments(const std::string&) {
  const auto expect_error = [](const std::function<void()>& call, const std::string& message) {
    try {
      call();
    } catch (const c10::Error& error) {
      const std::string what = error.what_without_backtrace();
      expect(what.find(message) != std::string::npos,
             "error \"" + what + "\" does not contain \"" + message + "\"");
      return;
    }
    throw Failure("no error for a call that should say \"" + message + "\"");
  };
  // T=4, B=2, I=3, H=4.
  const at::Tensor x = torch::zeros({4, 2, 3}), w_ih = torch::zeros({12, 3}),
                   w_hh = torch::zeros({12, 4}), bias = torch::zeros({12}),
                   state = torch::zeros({2, 4});
  const auto meta = torch::TensorOptions().device(torch::kMeta);
  using Args = std::function<void()>;
  const std::vector<std::pair<Args, std::string>> cases = {
      {[&] { lstm1997::lstm(x[0], w_ih, w_hh); }, "input: expected a 3-D tensor"},
      {[&] { lstm1997::lstm(x.unsqueeze(0), w_ih, w_hh); }, "input: expected a 3-D tensor"},
      {[&] { lstm1997::lstm(torch::zeros({4, 2, 0}), torch::zeros({12, 0}), w_hh); },
       "input: expected input_size"},
      {[&] { lstm1997::lstm(x.to(torch::kInt64), w_ih, w_hh); },
       "input: expected a float64, float32, float16 or bfloat16 tensor"},
      {[&] { lstm1997::lstm(x, w_ih.t(), w_hh); }, "weight_ih: expected shape [12, 3]"},
      {[&] { lstm1997::lstm(x, w_ih[0], w_hh); }, "weight_ih: expected shape"},
      {[&] { lstm1997::lstm(x, w_ih, torch::zeros({12, 5})); }, "weight_hh: expected shape"},
      {[&] { lstm1997::lstm(x, w_ih, torch::zeros({0, 0})); }, "hidden_size > 0"},
      {[&] { lstm1997::lstm(x, w_ih.to(torch::kFloat64), w_hh); }, "weight_ih: expected dtype"},
      {[&] { lstm1997::lstm(x, w_ih, w_hh.to(torch::kFloat16)); }, "weight_hh: expected dtype"},
      {[&] { lstm1997::lstm(x, w_ih, w_hh, torch::zeros({16})); }, "bias_ih: expected shape [12]"},
      {[&] { lstm1997::lstm(x, w_ih, w_hh, bias, torch::zeros({1, 12})); },
       "bias_hh: expected shape"},
      {[&] { lstm1997::lstm(x, w_ih, w_hh, bias, bias.to(torch::kFloat64)); },
       "bias_hh: expected dtype"},
      {[&] { lstm1997::lstm(x, w_ih, w_hh, {}, {}, torch::zeros({3, 4})); }, "h0: expected shape"},
      {[&] { lstm1997::lstm(x, w_ih, w_hh, {}, {}, state, torch::zeros({2, 5})); },
       "s0: expected shape"},
      {[&] { lstm1997::lstm(x, w_ih, w_hh, {}, {}, state, state.to(torch::kFloat64)); },
       "s0: expected dtype"},
      {[&] { lstm1997::lstm(x, w_ih, w_hh, {}, {}, torch::zeros({2, 4}, meta)); },
       "h0: expected device cpu"},
      {[&] { lstm1997::lstm(x, torch::zeros({12, 3}, meta), w_hh); },
       "weight_ih: expected device cpu"},
      {[&] { lstm1997::lstm(x, w_ih, w_hh, {}, {}, {}, {}, true, "relu"); },
       "activation: expected \"tanh\" or \"paper\""},
      {[&] {
         lstm1997::lstm(x.reshape({8, 3}), w_ih, w_hh, {}, {}, state, state, true, "tanh",
                        torch::tensor({2, 2, 2, 1}, torch::kInt64));
       },
       "batch_sizes: expected values summing to 8"},
      {[&] {
         lstm1997::lstm(x.reshape({8, 3}), w_ih, w_hh, {}, {}, state, state, true, "tanh",
                        torch::tensor({1, 2, 2, 2, 1}, torch::kInt64));
       },
       "batch_sizes: expected batch_sizes[0] == 2"},
      {[&] {
         lstm1997::lstm(x.reshape({8, 3}), w_ih, w_hh, {}, {}, {}, {}, true, "tanh",
                        torch::tensor({2, 2, 2, 2}, torch::kInt64));
       },
       "h0: expected a tensor of shape (batch, hidden_size) with batch_sizes"},
      {[&] { lstm1997::lstm(x, w_ih, w_hh, {}, {}, {}, {}, true, "tanh", {}, 0); },
       "cells_per_block: expected a positive number"},
      {[&] { lstm1997::lstm(x, w_ih, w_hh, {}, {}, {}, {}, true, "tanh", {}, 3); },
       "cells_per_block: expected a divisor of hidden_size"},
      {[&] { lstm1997::lstm(x, w_ih, w_hh, {}, {}, {}, {}, true, "tanh", {}, 2); },
       "weight_hh: expected shape (hidden_size + 2*hidden_size/cells_per_block"},
      {[&] { lstm1997::lstm(x, w_ih, w_hh, {}, {}, {}, {}, true, "tanh", {}, 1, true); },
       "weight_hh: expected shape (K + H + K, H + 2K) with gate_feedback"},
      {[&] {
         lstm1997::lstm(x, w_ih, torch::zeros({12, 12}), {}, {}, state, {}, true, "tanh", {}, 1,
                        true);
       },
       "h0: expected shape [2, 12] (batch, K + H + K)"},
      {[&] { lstm1997::lstm_bidirectional(x, w_ih, w_hh, {}, {}, torch::zeros({12, 2}), w_hh, {}, {}); },
       "weight_ih_reverse: expected shape [12, 3] (the shape of weight_ih)"},
      {[&] { lstm1997::lstm_bidirectional(x, w_ih, w_hh, bias, bias, w_ih, w_hh, {}, bias); },
       "bias_ih_reverse: expected a tensor (as bias_ih), got None"},
      {[&] {
         lstm1997::lstm_bidirectional(x, w_ih, w_hh, {}, {}, w_ih, w_hh, {}, {},
                                      torch::zeros({3, 2, 4}));
       },
       "h0: expected shape (2, batch, width)"},
  };
  for (const auto& [call, message] : cases) {
    expect_error(call, message);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::map<std::string, std::function<void(const std::string&)>> cases = {
      {"load_model", load_model},
      {"op_gradients", op_gradients},
      {"train_steps", train_steps},
      {"bad_arguments", bad_arguments},
  };
  if (argc != 3 || cases.count(argv[1]) == 0) {
    std::cerr << "usage: " << argv[0] << " CASE FIXTURES_DIR; CASE is one of:";
    for (const auto& entry : cases) {
      std::cerr << " " << entry.first;
    }
    std::cerr << "\n";
    return 2;
  }
  try {
    cases.at(argv[1])(argv[2]);
  } catch (const std::exception& error) {
    std::cerr << argv[1] << " FAILED: " << error.what() << "\n";
    return 1;
  }
  std::cout << argv[1] << " passed\n";
  return 0;
}
