// Where the layer ops' schemas (ops.cpp) meet the description of a call (layer_args.h), in both
// directions:
//  - into a kernel: lstm_kernel<impl>, forward_kernel<impl>, backward_kernel<impl> and
//    net_errors_kernel<impl> are the functions a backend registers for an op. Each takes the op's
//    arguments, runs the op's check (checks.h), which makes the description, and hands that to
//    `impl`; `impl`'s named results become the op's tuple. The argument list of each op is written once, in its check function.
//  - out of C++: dispatch_lstm, dispatch_forward and dispatch_backward call an op through the
//    dispatcher (on the backend of the tensors, and through autograd where it applies) from a
//    description.
#pragma once

#include "checks.h"
#include "layer_args.h"

#include <tuple>
#include <type_traits>

namespace lstm1997 {

using LayerOutputsTuple = std::tuple<at::Tensor, at::Tensor, at::Tensor>;
using ForwardResultTuple = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using LayerGradientsTuple =
    std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using NetErrorsTuple = std::tuple<at::Tensor, at::Tensor, at::Tensor>;

// The results in schema order.
LayerOutputsTuple to_tuple(const LayerOutputs& outputs);
ForwardResultTuple to_tuple(const ForwardResult& result);
LayerGradientsTuple to_tuple(const LayerGradients& gradients);
NetErrorsTuple to_tuple(const NetErrorResult& errors);

namespace detail {

// OpKernel<make, impl, check>::call has the parameters of `make`, the op's arguments in schema
// order: `make` turns them into a description, `check` (unless nullptr) checks it, `impl` runs.
template <auto make, auto impl, auto check = nullptr, typename MakeType = decltype(make)>
struct OpKernel;

template <auto make, auto impl, auto check, typename Description, typename... Arguments>
struct OpKernel<make, impl, check, Description (*)(Arguments...)> {
  static auto call(Arguments... arguments) {
    Description args = make(arguments...);
    if constexpr (!std::is_null_pointer_v<decltype(check)>) {
      check(args);
    }
    return to_tuple(impl(args));
  }
};

}  // namespace detail

template <LayerOutputs (*impl)(const LayerArgs&)>
constexpr auto lstm_kernel = &detail::OpKernel<&describe_lstm_args, impl, &check_layer_args>::call;

// For an lstm kernel that only passes the call on to an op (through the dispatcher) whose kernel
// checks it: no check here, so that a call is checked once.
template <LayerOutputs (*impl)(const LayerArgs&)>
constexpr auto lstm_passing_kernel = &detail::OpKernel<&describe_lstm_args, impl>::call;

template <ForwardResult (*impl)(const LayerArgs&)>
constexpr auto forward_kernel = &detail::OpKernel<&check_forward_args, impl>::call;

template <LayerGradients (*impl)(const BackwardArgs&)>
constexpr auto backward_kernel = &detail::OpKernel<&check_backward_args, impl>::call;

template <NetErrorResult (*impl)(const BackwardArgs&)>
constexpr auto net_errors_kernel = &detail::OpKernel<&check_net_error_args, impl>::call;

// lstm1997::lstm, differentiable (the public entry, as api.h's lstm).
LayerOutputs dispatch_lstm(const LayerArgs& args);
// lstm1997::_lstm_forward: the forward pass with what the backward needs (args.options.truncate
// is not passed: the forward has no use for it).
ForwardResult dispatch_forward(const LayerArgs& args);
// lstm1997::_lstm_backward.
LayerGradients dispatch_backward(const BackwardArgs& args);

}  // namespace lstm1997
