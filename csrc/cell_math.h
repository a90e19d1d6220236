// The math of one memory cell, written once for every kernel: scalars here, SIMD vectors where a
// backend specialises ElementwiseMath (cpu/vec_math.h).
#pragma once

#include "lstm1997.h"

#include <cmath>
#include <type_traits>
#include <utility>

namespace lstm1997 {

// The transcendental functions of the cell's formulas. A backend specialises this for its vector
// types, so that each formula is written once and instantiated for a vectorised loop body and for
// its scalar tail.
template <typename V>
struct ElementwiseMath {
  static V tanh(V x) { return std::tanh(x); }
  static V exp(V x) { return std::exp(x); }
  static V reciprocal(V x) { return V(1) / x; }
};

// Whether a backend's ElementwiseMath has sigmoid(x) and scaled_tanh(x, scale, slope) of its own:
// fused versions, whose chain of dependent operations is shorter than the composition of exp,
// reciprocal and tanh (in a recurrent layer that chain is the time of a step: cpu/vec_math.h).
template <typename V, typename = void>
struct HasFusedSquashes : std::false_type {};
template <typename V>
struct HasFusedSquashes<V, std::void_t<decltype(ElementwiseMath<V>::sigmoid(std::declval<V>()))>>
    : std::true_type {};

template <typename V>
inline V sigmoid(V x) {
  if constexpr (HasFusedSquashes<V>::value) {
    return ElementwiseMath<V>::sigmoid(x);
  } else {
    return ElementwiseMath<V>::reciprocal(V(1) + ElementwiseMath<V>::exp(V(0) - x));
  }
}

// Every squasher used here is scale * tanh(slope * x):
//   tanh                                     scale 1, slope 1
//   paper g: 4 sigmoid(x) - 2 = 2 tanh(x/2)  scale 2, slope 1/2
//   paper h: 2 sigmoid(x) - 1 =   tanh(x/2)  scale 1, slope 1/2
// so one code path serves both activations, and the derivative can be taken from the squashed
// value alone (backward then needs no pre-activations): y' = slope * (scale - y^2 / scale).
template <typename scalar_t>
struct Squash {
  scalar_t scale;
  scalar_t slope;

  template <typename V>
  V operator()(V x) const {
    if constexpr (HasFusedSquashes<V>::value) {
      return ElementwiseMath<V>::scaled_tanh(x, scale, slope);
    } else {
      return V(scale) * ElementwiseMath<V>::tanh(V(slope) * x);
    }
  }
  template <typename V>
  V grad_from_value(V y) const {
    return V(slope) * (V(scale) - y * y / V(scale));
  }
};

template <typename scalar_t>
Squash<scalar_t> cell_input_squash(Activation activation) {
  return activation == Activation::Tanh ? Squash<scalar_t>{1, 1} : Squash<scalar_t>{2, 0.5};
}

template <typename scalar_t>
Squash<scalar_t> cell_output_squash(Activation activation) {
  return activation == Activation::Tanh ? Squash<scalar_t>{1, 1} : Squash<scalar_t>{1, 0.5};
}

// One step of one cell (or of a vector of cells): the activated gates, the new cell state s_t,
// h(s_t), and the output h_t.
template <typename V>
struct CellStep {
  V input_gate, cell_input, output_gate, cell_state, squashed_state, hidden;
};

template <typename V, typename opmath_t>
inline CellStep<V> cell_forward(V a, V z, V c, V previous_state, Squash<opmath_t> g,
                                Squash<opmath_t> h) {
  const V i = sigmoid(a);
  const V gz = g(z);
  const V o = sigmoid(c);
  const V s = previous_state + i * gz;
  const V hs = h(s);
  return {i, gz, o, s, hs, o * hs};
}

// The error of one cell's three net inputs at one step, shared by both backward modes. `dh` is
// the error reaching h_t; `ds` enters as the error on s_t from step t+1 and leaves as the error on
// s_t (and so on s_{t-1}: the carousel passes it on unchanged).
template <typename V>
struct NetErrors {
  V input_gate, cell_input, output_gate;
};

template <typename V, typename opmath_t>
inline NetErrors<V> cell_backward(V dh, V& ds, V i, V gz, V o, V hs, Squash<opmath_t> g,
                                  Squash<opmath_t> h) {
  const V one(1);
  const V output_gate_error = dh * hs * o * (one - o);
  ds = ds + dh * o * h.grad_from_value(hs);
  return {ds * gz * i * (one - i), ds * i * g.grad_from_value(gz), output_gate_error};
}

}  // namespace lstm1997
