// The tiny-layer path: forward, inference and both backward modes of layers of the paper's sizes
// (tiny_layer.h says which), every configuration included: memory cell blocks, gate feedback, both
// activations, packed input.
//
// A step of such a layer is a few hundred multiply-adds: less than one library call, one ATen op or
// one hand-off between threads costs. So each batch row runs through all its steps in one loop, on
// one thread, with everything a step touches in a few cache lines: the weights packed once per call
// into [W_ih | W_hh] by columns (the forward's product, vectorised over the gate rows) and by rows
// (the backward's products with the net errors, vectorised over the inputs); the step's input
// [x_t | r_{t-1}] and the row's cell state in small buffers. A block's shared gates are computed
// once and spread to its cells in those buffers. The backward accumulates the weight gradients as
// it goes (one outer product per step, into a buffer of its own chunk of rows) instead of keeping
// the net errors for library products afterwards.
//
// Rows of the same length also run side by side: four to a loop (forward_rows), or, for float32
// layers of at most 8 cells on AVX-512, up to four in the lanes of one vector (forward_packed,
// backward_packed), which is what makes an ensemble of small nets cheaper than its members one by
// one.
//
// Rows are independent sequences: the forward splits them between threads freely; the backward
// sums the weight gradients of fixed chunks of rows, then the chunks in order, so that the result
// does not depend on the thread count.
#include "tiny_layer.h"

#include "matmul.h"
#include "thread_split.h"
#include "vec_math.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <new>
#include <optional>
#include <type_traits>
#include <vector>

namespace lstm1997 {
namespace cpu {

namespace {

// Whether a layer of I inputs takes the wide-input branch (TinyLayer::wide).
bool wide_inputs(int64_t I) {
  const Switch mode = read_switch("LSTM1997_TINY_WIDE_INPUTS");
  return mode == Switch::kAuto ? I >= kTinyWideInputs : mode == Switch::kForce;
}

// How many rows of a float32 layer share a 16-lane vector (lane-packed rows): 0 where it does not
// pack (H > 8, the wide-input branch, LSTM1997_TINY_PACKED=0, or a build without AVX-512).
int64_t rows_per_vector(int64_t H, bool wide) {
#if defined(CPU_CAPABILITY_AVX512)
  if (wide || H < 1 || H > 8 || read_switch("LSTM1997_TINY_PACKED") == Switch::kOff) {
    return 0;
  }
  return std::min<int64_t>(4, 16 / H);
#else
  (void)H;
  (void)wide;
  return 0;
#endif
}

}  // namespace

bool packs_rows(const LayerArgs& args) {
  return args.input.scalar_type() == at::kFloat &&
         rows_per_vector(args.sizes.hidden_size.expect_int(),
                         wide_inputs(args.sizes.input_size.expect_int())) > 1;
}

bool use_tiny_layer(const LayerArgs& args) {
  const at::ScalarType dtype = args.input.scalar_type();
  const int64_t H = args.sizes.hidden_size.expect_int();
  if ((dtype != at::kFloat && dtype != at::kDouble) || H > kTinyMaxHidden ||
      args.sizes.seq_len.expect_int() == 0 || args.sizes.batch.expect_int() == 0) {
    return false;
  }
  const Switch mode = read_switch("LSTM1997_TINY_LAYER");
  if (mode != Switch::kAuto) {
    return mode == Switch::kForce;
  }
  // Memory cell blocks have no other fast path; without blocks the small-layer loop shares each
  // weight load between the rows of a register tile, which pays from a tile's worth of rows on
  // (benchmarks/bench.py --tiny), except against lane-packed rows, which share every instruction
  // between up to four rows (benchmarks/bench.py --small-batches). LSTM1997_SMALL_LAYER=1 keeps
  // the small-layer loop for its own tests.
  return args.options.cells_per_block > 1 || args.sizes.batch.expect_int() < kTinyMaxBatch ||
         (packs_rows(args) && read_switch("LSTM1997_SMALL_LAYER") != Switch::kForce);
}

namespace {

// Rows of a chunk of the backward: each chunk sums its weight gradients on its own.
constexpr int64_t kRowsPerChunk = 4;

int64_t round_up(int64_t value, int64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

// Member e's part of a fresh (contiguous) result of E members, members in front (E = 1: the
// whole tensor, with or without a member dimension).
template <typename scalar_t>
scalar_t* member_data(const at::Tensor& result, int64_t e, int64_t members) {
  return result.data_ptr<scalar_t>() + e * (result.numel() / members);
}

// Stores the first `count` lanes of `value` (count <= its size). A vector's masked store
// (vmaskmovps) is microcoded and slow on some x86 cores (AMD's among them), and at these sizes most
// of a row's stores are partial: a full store to the stack and scalar copies instead.
template <typename Vec, typename scalar_t>
inline void store_lanes(const Vec& value, scalar_t* data, int64_t count) {
  if (count == Vec::size()) {
    value.store(data);
    return;
  }
#if defined(CPU_CAPABILITY_AVX512)
  if constexpr (std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, double>) {
    value.store(data, count);
    return;
  }
#endif
  alignas(64) scalar_t lanes[Vec::size()];
  value.store(lanes);
  for (int64_t k = 0; k < count; ++k) {
    data[k] = lanes[k];
  }
}

// The layer's weights and constants, packed once per call.
template <typename scalar_t>
struct TinyLayer {
  using Vec = at::vec::Vectorized<scalar_t>;
  static constexpr int64_t L = Vec::size();

  int64_t I, H, S, K, G, R, C, hidden_offset;
  int64_t Hp, Gp, Cp;  // H, G and C = I + R rounded up to whole vectors
  bool feedback;
  // Many inputs (kTinyWideInputs or more, e.g. exp 2c's one-hot symbols): the forward takes each
  // gate row's product with the step's input as one dot product over by_rows (the columns'
  // layout would pad every gate to whole vectors and stream more weights than a cache holds),
  // and the backward adds the input weights' gradient once per row, after its steps, from the
  // net errors it keeps per step.
  bool wide;
  // [W_ih | W_hh] by columns, per cell, (C, 3 Hp): row c holds input c's weights into the input
  // gate, cell input and output gate of every cell (a block's gate rows repeated for its cells),
  // each gate padded to Hp. The forward's product then leaves every cell's three net inputs in
  // registers, lined up by cell, whatever the block layout.
  std::vector<scalar_t> by_cells;
  std::vector<scalar_t> cell_bias;  // (3 Hp): bias_ih + bias_hh per cell, zero when absent
  // [W_ih | W_hh] by rows, (G, Cp): the backward's product of the net errors with the weights.
  std::vector<scalar_t> by_rows;
  Squash<scalar_t> g, h;

  TinyLayer(const LayerArgs& args, bool backward_products);

  // The gate row of gate `gate` of cell j.
  int64_t gate_row(int64_t gate, int64_t j) const {
    return gate == kInputGate ? j / S : gate == kCellInput ? K + j : K + H + j / S;
  }
};

template <typename scalar_t>
TinyLayer<scalar_t>::TinyLayer(const LayerArgs& args, bool backward_products) {
  I = args.sizes.input_size.expect_int();
  H = args.sizes.hidden_size.expect_int();
  R = args.sizes.recurrent_size.expect_int();
  G = args.sizes.gate_rows.expect_int();
  S = args.options.cells_per_block;
  K = H / S;
  C = I + R;
  feedback = args.options.gate_feedback;
  wide = wide_inputs(I);
  hidden_offset = lstm1997::hidden_offset(H, S, feedback);
  Hp = round_up(H, L);
  Gp = round_up(G, L);
  Cp = round_up(C, L);
  g = cell_input_squash<scalar_t>(args.options.activation);
  h = cell_output_squash<scalar_t>(args.options.activation);
  const at::Tensor weight_ih = args.weight_ih.contiguous(), weight_hh = args.weight_hh.contiguous();
  const scalar_t* w_ih = weight_ih.const_data_ptr<scalar_t>();
  const scalar_t* w_hh = weight_hh.const_data_ptr<scalar_t>();
  const auto weight = [&](int64_t k, int64_t c) {
    return c < I ? w_ih[k * I + c] : w_hh[k * R + (c - I)];
  };
  by_cells.assign(C * kNumGates * Hp, scalar_t(0));
  for (int64_t c = wide ? I : 0; c < C; ++c) {
    for (int64_t gate = 0; gate < kNumGates; ++gate) {
      for (int64_t j = 0; j < H; ++j) {
        by_cells[c * kNumGates * Hp + gate * Hp + j] = weight(gate_row(gate, j), c);
      }
    }
  }
  if (backward_products || wide) {
    by_rows.assign(G * Cp, scalar_t(0));
    for (int64_t k = 0; k < G; ++k) {
      for (int64_t c = 0; c < C; ++c) {
        by_rows[k * Cp + c] = weight(k, c);
      }
    }
  }
  std::vector<scalar_t> bias(G, scalar_t(0));
  for (const auto* given : {&args.bias_ih, &args.bias_hh}) {
    if (present(*given)) {
      const at::Tensor b = given->value().contiguous();
      const scalar_t* values = b.const_data_ptr<scalar_t>();
      for (int64_t k = 0; k < G; ++k) {
        bias[k] += values[k];
      }
    }
  }
  cell_bias.assign(kNumGates * Hp, scalar_t(0));
  for (int64_t gate = 0; gate < kNumGates; ++gate) {
    for (int64_t j = 0; j < H; ++j) {
      cell_bias[gate * Hp + j] = bias[gate_row(gate, j)];
    }
  }
}

// Runs fn(std::integral_constant<int64_t, V>) with V = Hp / L, the vectors of one gate's cells,
// so that a row's loop keeps its vectors in registers.
template <typename scalar_t, typename Fn>
void with_cell_vectors(int64_t vectors, const Fn& fn) {
  constexpr int64_t kMaxVectors = (kTinyMaxHidden + TinyLayer<scalar_t>::L - 1) /
                                  TinyLayer<scalar_t>::L;
  static_assert(kMaxVectors <= 8, "the switch below covers up to 8 vectors a gate");
  switch (vectors) {
    case 1: return fn(std::integral_constant<int64_t, 1>{});
    case 2: return fn(std::integral_constant<int64_t, 2>{});
    case 3: return fn(std::integral_constant<int64_t, 3>{});
    case 4: return fn(std::integral_constant<int64_t, 4>{});
    case 5: return fn(std::integral_constant<int64_t, 5>{});
    case 6: return fn(std::integral_constant<int64_t, 6>{});
    case 7: return fn(std::integral_constant<int64_t, 7>{});
    default: return fn(std::integral_constant<int64_t, 8>{});
  }
}

// Where a layer call's tensors are, as pointers (null for what is absent).
template <typename scalar_t>
struct ForwardBuffers {
  const scalar_t *input, *h0, *s0;
  scalar_t *output, *gates, *squashed_state, *h_n, *s_n;  // gates, squashed_state: when saving
};

// Wide inputs: out[gate * Hp + j] = (W_ih x)[gate row of cell j] for x = one step's input (I
// values): a dot product per gate row, eight rows at a time, then spread to the cells.
template <typename scalar_t>
void input_products(const TinyLayer<scalar_t>& layer, const scalar_t* x, scalar_t* out) {
  using Vec = typename TinyLayer<scalar_t>::Vec;
  constexpr int64_t L = TinyLayer<scalar_t>::L;
  constexpr int64_t kRows = 8;
  const int64_t I = layer.I, G = layer.G, Cp = layer.Cp;
  scalar_t* rows = out + kNumGates * layer.Hp;  // (G): the gate rows' products
  for (int64_t k0 = 0; k0 < G; k0 += kRows) {
    const int64_t count = std::min(kRows, G - k0);
    Vec sum[kRows];
    for (int64_t k = 0; k < kRows; ++k) {
      sum[k] = Vec(0);
    }
    int64_t c = 0;
    for (; c + L <= I; c += L) {
      const Vec value = Vec::loadu(x + c);
      for (int64_t k = 0; k < count; ++k) {
        sum[k] = at::vec::fmadd(value, Vec::loadu(layer.by_rows.data() + (k0 + k) * Cp + c),
                                sum[k]);
      }
    }
    if (c < I) {  // the rest, zero past x's end (by_rows holds W_hh there)
      const Vec value = Vec::loadu(x + c, I - c);
      for (int64_t k = 0; k < count; ++k) {
        sum[k] = at::vec::fmadd(value, Vec::loadu(layer.by_rows.data() + (k0 + k) * Cp + c),
                                sum[k]);
      }
    }
    for (int64_t k = 0; k < count; ++k) {
      rows[k0 + k] = at::vec::vec_reduce_all<scalar_t>(std::plus<Vec>(), sum[k]);
    }
  }
  for (int64_t gate = 0; gate < kNumGates; ++gate) {
    for (int64_t j = 0; j < layer.H; ++j) {
      out[gate * layer.Hp + j] = rows[layer.gate_row(gate, j)];
    }
  }
}

// One batch row's walk through its steps, a step at a time (forward_rows interleaves rows); V
// vectors hold one gate's cells.
template <typename scalar_t, int64_t V>
struct ForwardRow {
  using Vec = typename TinyLayer<scalar_t>::Vec;
  static constexpr int64_t L = TinyLayer<scalar_t>::L;
  static constexpr int64_t kNets = kNumGates * V;

  const TinyLayer<scalar_t>& layer;
  const ForwardBuffers<scalar_t>& io;
  int64_t b;
  // scratch: the step's input [x_t | r_{t-1}] (C), then the step's activated gates and h_t, one
  // gate after the other (4 Hp), from which r_t is gathered; with wide inputs then the cells' net
  // inputs from x_t (3 Hp) and the gate rows' (Gp).
  scalar_t* step_input;
  scalar_t* recurrent;
  scalar_t* activated;
  // Wide inputs: each cell's three net inputs from x_t (a block's gate rows repeated for its
  // cells), then the step's product covers r_{t-1} only.
  scalar_t* from_input;
  Vec state[V];

  ForwardRow(const TinyLayer<scalar_t>& layer, const ForwardBuffers<scalar_t>& io, int64_t b,
             scalar_t* scratch)
      : layer(layer), io(io), b(b), step_input(scratch), recurrent(scratch + layer.I),
        activated(scratch + layer.Cp), from_input(activated + (kNumGates + 1) * layer.Hp) {
    const int64_t R = layer.R, H = layer.H;
    if (io.h0 != nullptr) {
      for (int64_t c = 0; c < R; ++c) {
        recurrent[c] = io.h0[b * R + c];
      }
    } else {
      std::fill(recurrent, recurrent + R, scalar_t(0));
    }
    for (int64_t v = 0; v < V; ++v) {
      const int64_t count = std::min(L, H - v * L);
      state[v] = io.s0 == nullptr ? Vec(0) : Vec::loadu(io.s0 + b * H + v * L, count);
    }
  }

  // The row's step t, whose values lie at row `row` of the step-major tensors.
  C10_ALWAYS_INLINE void step(int64_t row) {
    const int64_t I = layer.I, H = layer.H, S = layer.S, K = layer.K, C = layer.C;
    const scalar_t* weights = layer.by_cells.data();
    if (layer.wide) {
      input_products(layer, io.input + row * I, from_input);
    } else {
      for (int64_t c = 0; c < I; ++c) {
        step_input[c] = io.input[row * I + c];
      }
    }
    // Two sums, so that the chain of dependent multiply-adds through r_{t-1} is half as long.
    Vec net[kNets], other[kNets];
    for (int64_t n = 0; n < kNets; ++n) {
      net[n] = Vec::loadu(layer.cell_bias.data() + n * L);
      other[n] = layer.wide ? Vec::loadu(from_input + n * L) : Vec(0);
    }
    int64_t c = layer.wide ? I : 0;
    for (; c + 1 < C; c += 2) {
      const Vec first(step_input[c]), second(step_input[c + 1]);
      const scalar_t* column = weights + c * kNets * L;
      for (int64_t n = 0; n < kNets; ++n) {
        net[n] = at::vec::fmadd(first, Vec::loadu(column + n * L), net[n]);
        other[n] = at::vec::fmadd(second, Vec::loadu(column + (kNets + n) * L), other[n]);
      }
    }
    if (c < C) {
      const Vec last(step_input[c]);
      for (int64_t n = 0; n < kNets; ++n) {
        net[n] = at::vec::fmadd(last, Vec::loadu(weights + c * kNets * L + n * L), net[n]);
      }
    }
    scalar_t* gates = io.gates == nullptr ? nullptr : io.gates + row * kNumGates * H;
    scalar_t* squashed = io.squashed_state == nullptr ? nullptr : io.squashed_state + row * H;
    for (int64_t v = 0; v < V; ++v) {
      const int64_t j = v * L, count = std::min(L, H - j);
      const CellStep<Vec> cell = cell_forward(net[v] + other[v], net[V + v] + other[V + v],
                                              net[2 * V + v] + other[2 * V + v], state[v],
                                              layer.g, layer.h);
      const Vec &i = cell.input_gate, &z = cell.cell_input, &o = cell.output_gate,
                &hs = cell.squashed_state, &y = cell.hidden;
      state[v] = cell.cell_state;
      store_lanes(y, io.output + row * H + j, count);
      if (gates != nullptr) {
        store_lanes(i, gates + kInputGate * H + j, count);
        store_lanes(z, gates + kCellInput * H + j, count);
        store_lanes(o, gates + kOutputGate * H + j, count);
        store_lanes(hs, squashed + j, count);
      }
      i.store(activated + kInputGate * layer.Hp + j);
      o.store(activated + kOutputGate * layer.Hp + j);
      y.store(activated + kNumGates * layer.Hp + j);
    }
    // r_t: h_t, or with gate feedback [input gates | h_t | output gates], a block's gates read at
    // its first cell.
    const scalar_t* hidden = activated + kNumGates * layer.Hp;
    if (layer.feedback) {
      for (int64_t k = 0; k < K; ++k) {
        recurrent[k] = activated[kInputGate * layer.Hp + k * S];
        recurrent[K + H + k] = activated[kOutputGate * layer.Hp + k * S];
      }
      for (int64_t j = 0; j < H; ++j) {
        recurrent[K + j] = hidden[j];
      }
    } else {
      for (int64_t j = 0; j < H; ++j) {
        recurrent[j] = hidden[j];
      }
    }
  }

  void finish() {
    const int64_t R = layer.R, H = layer.H;
    for (int64_t c = 0; c < R; ++c) {
      io.h_n[b * R + c] = recurrent[c];
    }
    for (int64_t v = 0; v < V; ++v) {
      store_lanes(state[v], io.s_n + b * H + v * L, std::min(L, H - v * L));
    }
  }
};

// Rows that run side by side in one loop (forward_rows): a row's step is a chain of dependent
// operations (its product needs the previous step's h, the activations need the product), too
// short to keep the core busy; the steps of independent rows, one after the other in the loop,
// fill each other's waits.
constexpr int64_t kInterleavedRows = 4;

// The steps [0, length) of N rows of the same length, rows[n] being batch row bs[n] of the layer
// layers[n] (members of an ensemble have layers of their own); each row's arithmetic is what it
// would be alone.
template <typename scalar_t, int64_t V, int64_t N>
void forward_rows(const TinyLayer<scalar_t>* const* layers, const StepRows& steps,
                  const int64_t* bs, int64_t length, const ForwardBuffers<scalar_t>* const* io,
                  scalar_t* scratch, int64_t scratch_per_row) {
  alignas(ForwardRow<scalar_t, V>) unsigned char storage[N * sizeof(ForwardRow<scalar_t, V>)];
  auto* rows = reinterpret_cast<ForwardRow<scalar_t, V>*>(storage);
  for (int64_t n = 0; n < N; ++n) {
    new (&rows[n]) ForwardRow<scalar_t, V>(*layers[n], *io[n], bs[n], scratch + n * scratch_per_row);
  }
  for (int64_t t = 0; t < length; ++t) {
    for (int64_t n = 0; n < N; ++n) {
      rows[n].step(steps.offset[t] + bs[n]);
    }
  }
  for (int64_t n = 0; n < N; ++n) {
    rows[n].finish();
    rows[n].~ForwardRow<scalar_t, V>();
  }
}

// Lane-packed rows (float, AVX-512): a layer of H <= 8 cells fills at most half of a 16-lane
// vector, so P = min(kMaxPackedRows, 16 / H) rows of the same length share one: lane p * H + j
// holds cell j of row p. One instruction stream then carries P rows' steps (each row's weights
// in its own lanes, so the rows may be ensemble members). A row's step-to-step chain stays in
// registers: the next step's recurrent inputs are lane permutes of this step's gates and h_t.
// Every lane computes what the one-row loop (ForwardRow) computes for its cell, with the same
// operations in the same order: the results are the same bit for bit.
#if defined(CPU_CAPABILITY_AVX512)
constexpr int64_t kMaxPackedRows = 4;  // rows_per_vector's largest answer
static_assert(kMaxPackedRows <= kInterleavedRows, "a group's rows fit forward_rows's arrays");

int64_t packed_rows(const TinyLayer<float>& layer) {
  return rows_per_vector(layer.H, layer.wide);
}

// Where P packed rows of a layer lie in a vector's lanes, and where r's columns come from.
struct PackedLanes {
  int64_t P, H;
  __mmask16 row_mask[kMaxPackedRows];  // the lanes of row p
  // r = [input gates (K, with gate feedback) | h (H) | output gates (K)]: column k is lane
  // `cell(k)` of a row's lanes in source `source(k)` (0 input gates, 1 h, 2 output gates), and
  // permutes[k] gathers it into every lane of its row.
  int64_t from_input_gates, from_hidden, S;
  int64_t R;
  __m512i permutes[3 * 8];  // r has at most 3 H columns (gate feedback), H <= 8

  PackedLanes(const TinyLayer<float>& layer, int64_t P)
      : P(P), H(layer.H), from_input_gates(layer.feedback ? layer.K : 0),
        from_hidden(from_input_gates + layer.H), S(layer.S), R(layer.R) {
    TORCH_INTERNAL_ASSERT(R <= 3 * 8);
    for (int64_t p = 0; p < P; ++p) {
      row_mask[p] = static_cast<__mmask16>(((1u << H) - 1) << (p * H));
    }
    for (int64_t k = 0; k < layer.R; ++k) {
      alignas(64) int32_t index[16] = {0};
      for (int64_t p = 0; p < P; ++p) {
        for (int64_t j = 0; j < H; ++j) {
          index[p * H + j] = static_cast<int32_t>(p * H + cell(k));
        }
      }
      permutes[k] = _mm512_load_si512(index);
    }
  }
  int64_t source(int64_t k) const {
    return k < from_input_gates ? 0 : k < from_hidden ? 1 : 2;
  }
  int64_t cell(int64_t k) const {
    return k < from_input_gates ? k * S : k < from_hidden ? k - from_input_gates
                                                          : (k - from_hidden) * S;
  }
  // Row p's R values of r (h0, h_n, or their errors) into/out of per-source lane arrays.
  void spread(const float* r, int64_t p, float (*lanes)[16]) const {
    for (int64_t k = 0; k < R; ++k) {
      lanes[source(k)][p * H + cell(k)] = r[k];
    }
  }
  void gather(const float (*lanes)[16], int64_t p, float* r) const {
    for (int64_t k = 0; k < R; ++k) {
      r[k] = lanes[source(k)][p * H + cell(k)];
    }
  }
  // Input column c of the step whose rows start at `offset`, in every lane of each row.
  template <typename Buffers>
  __m512 input_column(const Buffers* const* io, const int64_t* bs, int64_t offset, int64_t I,
                      int64_t c) const {
    __m512 column = _mm512_setzero_ps();
    for (int64_t p = 0; p < P; ++p) {
      column = _mm512_mask_broadcastss_ps(
          column, row_mask[p], _mm_load_ss(io[p]->input + (offset + bs[p]) * I + c));
    }
    return column;
  }
  // Row p's H values in its lanes (from an address shifted back by its first lane; the other
  // lanes keep `into`), and back. Masked-off lanes are neither read nor written (AVX-512 masked
  // loads and stores suppress their faults): only the row's own H floats are touched.
  __m512 load(__m512 into, const float* row_data, int64_t p) const {
    return _mm512_mask_loadu_ps(into, row_mask[p], shifted(row_data, p));
  }
  void store(__m512 value, float* row_data, int64_t p) const {
    _mm512_mask_storeu_ps(shifted(row_data, p), row_mask[p], value);
  }
  // The address p * H floats before row_data, computed as an integer: as a pointer it may lie
  // before the tensor, which C++ pointer arithmetic does not allow.
  void* shifted(const float* row_data, int64_t p) const {
    return reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(row_data) -
                                   static_cast<uintptr_t>(p * H) * sizeof(float));
  }
};

// The steps [0, length) of P rows of the same length, as forward_rows's.
void forward_packed(const TinyLayer<float>* const* layers, const StepRows& steps,
                    const int64_t* bs, int64_t P, int64_t length,
                    const ForwardBuffers<float>* const* io) {
  using Vec = at::vec::Vectorized<float>;
  constexpr int64_t L = 16;
  const TinyLayer<float>& shape = *layers[0];
  const int64_t I = shape.I, H = shape.H, R = shape.R, C = shape.C, Hp = shape.Hp;
  // Each row's weights and biases in its lanes: (C, 3) and (3) vectors, zero in unused lanes.
  std::vector<float> weights((C * kNumGates + kNumGates) * L, 0.0f);
  float* weight_lanes = weights.data();
  float* bias_lanes = weight_lanes + C * kNumGates * L;
  const PackedLanes lanes(shape, P);
  for (int64_t p = 0; p < P; ++p) {
    for (int64_t gate = 0; gate < kNumGates; ++gate) {
      for (int64_t j = 0; j < H; ++j) {
        bias_lanes[gate * L + p * H + j] = layers[p]->cell_bias[gate * Hp + j];
        for (int64_t c = 0; c < C; ++c) {
          weight_lanes[(c * kNumGates + gate) * L + p * H + j] =
              layers[p]->by_cells[c * kNumGates * Hp + gate * Hp + j];
        }
      }
    }
  }
  // The previous step's input gates, h and output gates (r_{t-1}'s columns are lane permutes of
  // them); before step 0, r_{-1} = h0 (or zeros) placed where the permutes read it.
  alignas(64) float start[kNumGates][L] = {{0}};
  for (int64_t p = 0; p < P; ++p) {
    if (io[p]->h0 != nullptr) {
      lanes.spread(io[p]->h0 + bs[p] * R, p, start);
    }
  }
  Vec input_gates = Vec::loadu(start[0]), hidden = Vec::loadu(start[1]),
      output_gates = Vec::loadu(start[2]);
  Vec state(0);
  for (int64_t p = 0; p < P; ++p) {
    if (io[p]->s0 != nullptr) {
      state = lanes.load(state, io[p]->s0 + bs[p] * H, p);
    }
  }
  const auto store_row = [&](const Vec& value, float* row_data, int64_t p) {
    lanes.store(value, row_data, p);
  };
  for (int64_t t = 0; t < length; ++t) {
    const int64_t offset = steps.offset[t];
    Vec net[kNumGates], other[kNumGates];
    for (int64_t gate = 0; gate < kNumGates; ++gate) {
      net[gate] = Vec::loadu(bias_lanes + gate * L);
      other[gate] = Vec(0);
    }
    // Column c's value in every lane of a row, into the sums as ForwardRow adds them: even
    // columns into `net`, odd into `other`.
    const auto add_column = [&](int64_t c, const Vec& column) {
      const float* w = weight_lanes + c * kNumGates * L;
      Vec* sums = c % 2 == 0 ? net : other;
      for (int64_t gate = 0; gate < kNumGates; ++gate) {
        sums[gate] = at::vec::fmadd(column, Vec::loadu(w + gate * L), sums[gate]);
      }
    };
    for (int64_t c = 0; c < I; ++c) {
      add_column(c, Vec(lanes.input_column(io, bs, offset, I, c)));
    }
    for (int64_t k = 0; k < R; ++k) {
      const Vec& source = k < lanes.from_input_gates ? input_gates
                          : k < lanes.from_hidden    ? hidden
                                                     : output_gates;
      add_column(I + k, Vec(_mm512_permutexvar_ps(lanes.permutes[k], source)));
    }
    const CellStep<Vec> cell = cell_forward(net[0] + other[0], net[1] + other[1],
                                            net[2] + other[2], state, shape.g, shape.h);
    state = cell.cell_state;
    input_gates = cell.input_gate;
    hidden = cell.hidden;
    output_gates = cell.output_gate;
    for (int64_t p = 0; p < P; ++p) {
      const ForwardBuffers<float>& row = *io[p];
      const int64_t index = offset + bs[p];
      store_row(cell.hidden, row.output + index * H, p);
      if (row.gates != nullptr) {
        float* gates = row.gates + index * kNumGates * H;
        store_row(cell.input_gate, gates + kInputGate * H, p);
        store_row(cell.cell_input, gates + kCellInput * H, p);
        store_row(cell.output_gate, gates + kOutputGate * H, p);
        store_row(cell.squashed_state, row.squashed_state + index * H, p);
      }
    }
  }
  alignas(64) float last[kNumGates][L];
  input_gates.store(last[0]);
  hidden.store(last[1]);
  output_gates.store(last[2]);
  for (int64_t p = 0; p < P; ++p) {
    lanes.gather(last, p, io[p]->h_n + bs[p] * R);
    store_row(state, io[p]->s_n + bs[p] * H, p);
  }
}
#endif

// Row e * B + b of a call of E members (E = 1: one layer) is batch row b of member e.
template <typename scalar_t>
void tiny_forward_typed(const std::vector<LayerArgs>& members, const StepRows& steps,
                        ForwardResult& result, bool save) {
  const int64_t E = static_cast<int64_t>(members.size());
  std::vector<TinyLayer<scalar_t>> layers;
  std::vector<ForwardBuffers<scalar_t>> io;
  std::vector<at::Tensor> inputs;  // the contiguous tensors io points into
  layers.reserve(E);
  for (int64_t e = 0; e < E; ++e) {
    const LayerArgs& args = members[e];
    layers.emplace_back(args, /*backward_products=*/false);
    const at::Tensor input = args.input.contiguous();
    const at::Tensor h0 = present(args.h0) ? args.h0->contiguous() : at::Tensor();
    const at::Tensor s0 = present(args.s0) ? args.s0->contiguous() : at::Tensor();
    inputs.insert(inputs.end(), {input, h0, s0});
    io.push_back({input.const_data_ptr<scalar_t>(),
                  h0.defined() ? h0.const_data_ptr<scalar_t>() : nullptr,
                  s0.defined() ? s0.const_data_ptr<scalar_t>() : nullptr,
                  member_data<scalar_t>(result.saved.output, e, E),
                  save ? member_data<scalar_t>(result.saved.gates, e, E) : nullptr,
                  save ? member_data<scalar_t>(result.saved.squashed_state, e, E) : nullptr,
                  member_data<scalar_t>(result.h_n, e, E),
                  member_data<scalar_t>(result.s_n, e, E)});
  }
  const TinyLayer<scalar_t>& layer = layers.front();  // the members' sizes are the same
  const std::vector<int64_t> lengths = sequence_lengths(steps);
  const int64_t B = steps.batch;
  // Groups of up to kInterleavedRows (or of lane-packed rows: packed_rows) consecutive rows (row
  // e * B + b) of the same length.
  int64_t packed = 0;
#if defined(CPU_CAPABILITY_AVX512)
  if constexpr (std::is_same_v<scalar_t, float>) {
    packed = packed_rows(layer);
  }
#endif
  const int64_t group_size = packed > 1 ? packed : kInterleavedRows;
  std::vector<int64_t> group_start{0};
  for (int64_t row = 1; row < E * B; ++row) {
    if (row - group_start.back() == group_size || lengths[row % B] != lengths[(row - 1) % B]) {
      group_start.push_back(row);
    }
  }
  const int64_t groups = static_cast<int64_t>(group_start.size());
  group_start.push_back(E * B);
  const int64_t scratch_per_row = layer.Cp + (2 * kNumGates + 1) * layer.Hp + layer.Gp;
  const int64_t group_work = std::max<int64_t>(1, steps.steps() * layer.G * layer.C *
                                                      kInterleavedRows);
  with_cell_vectors<scalar_t>(layer.Hp / layer.L, [&](auto vectors) {
    constexpr int64_t V = decltype(vectors)::value;
    at::parallel_for(0, groups, std::max<int64_t>(1, kElementsPerTask * 8 / group_work),
                     [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> scratch(kInterleavedRows * scratch_per_row, scalar_t(0));
      for (int64_t group = begin; group < end; ++group) {
        // (kInterleavedRows is at least kMaxPackedRows.)
        const TinyLayer<scalar_t>* group_layers[kInterleavedRows];
        const ForwardBuffers<scalar_t>* group_io[kInterleavedRows];
        int64_t bs[kInterleavedRows] = {0};
        const int64_t first = group_start[group], count = group_start[group + 1] - first;
        for (int64_t n = 0; n < count; ++n) {
          const int64_t e = (first + n) / B;
          bs[n] = (first + n) % B;
          group_layers[n] = &layers[e];
          group_io[n] = &io[e];
        }
        const int64_t length = lengths[bs[0]];
#if defined(CPU_CAPABILITY_AVX512)
        if constexpr (std::is_same_v<scalar_t, float>) {
          if (packed > 1 && count > 1) {
            forward_packed(group_layers, steps, bs, count, length, group_io);
            continue;
          }
        }
#endif
        if (count == kInterleavedRows) {
          forward_rows<scalar_t, V, kInterleavedRows>(group_layers, steps, bs, length, group_io,
                                                      scratch.data(), scratch_per_row);
        } else {
          for (int64_t n = 0; n < count; ++n) {
            forward_rows<scalar_t, V, 1>(group_layers + n, steps, bs + n, length, group_io + n,
                                         scratch.data(), scratch_per_row);
          }
        }
      }
    });
  });
}

// What the backward of one chunk of rows reads and writes.
template <typename scalar_t>
struct BackwardBuffers {
  const scalar_t *grad_output, *grad_h_n, *grad_s_n, *input, *h0, *output, *squashed_state,
      *gates;
  scalar_t *grad_input, *grad_h0, *grad_s0;  // grad_input null when not wanted
};

// Wide inputs: dW_ih += sum over the row's steps [first_step, end_step) of dnet_t x_t^T, into
// `grad_columns` ((C, Gp) by columns), from those steps' net errors (end_step - first_step, Gp).
// Eight input columns at a time, each step's eight inputs read once for all gate rows in a vector;
// steps in passes of kStepsPerPass, whose inputs stay in cache while every column goes over them
// (the row's inputs may not fit).
template <typename scalar_t>
void add_input_weight_gradients(const TinyLayer<scalar_t>& layer, const StepRows& steps,
                                int64_t b, int64_t first_step, int64_t end_step,
                                const scalar_t* input, const scalar_t* step_net_errors,
                                scalar_t* grad_columns) {
  using Vec = typename TinyLayer<scalar_t>::Vec;
  constexpr int64_t L = TinyLayer<scalar_t>::L;
  constexpr int64_t kColumns = 8;
  const int64_t I = layer.I, Gp = layer.Gp;
  constexpr int64_t kStepsPerPass = 64;
  int64_t begin = 0, end = 0;
  const auto add_columns = [&](int64_t first, int64_t v, auto columns) {
    constexpr int64_t kCount = decltype(columns)::value;
    Vec sum[kCount];
    for (int64_t c = 0; c < kCount; ++c) {
      sum[c] = Vec(0);
    }
    for (int64_t t = begin; t < end; ++t) {
      const scalar_t* x = input + (steps.offset[t] + b) * I + first;
      const Vec error = Vec::loadu(step_net_errors + (t - first_step) * Gp + v);
      for (int64_t c = 0; c < kCount; ++c) {
        sum[c] = at::vec::fmadd(Vec(x[c]), error, sum[c]);
      }
    }
    for (int64_t c = 0; c < kCount; ++c) {
      scalar_t* column = grad_columns + (first + c) * Gp + v;
      (Vec::loadu(column) + sum[c]).store(column);
    }
  };
  for (begin = first_step; begin < end_step; begin = end) {
    end = std::min(end_step, begin + kStepsPerPass);
    for (int64_t v = 0; v < Gp; v += L) {
      int64_t first = 0;
      for (; first + kColumns <= I; first += kColumns) {
        add_columns(first, v, std::integral_constant<int64_t, kColumns>{});
      }
      for (; first < I; ++first) {
        add_columns(first, v, std::integral_constant<int64_t, 1>{});
      }
    }
  }
}

// r_{t-1} of batch row b, what step t's net inputs saw, into r (R values): h0 (or zeros) at
// t = 0; else step t - 1's [input gates | h | output gates] with gate feedback (a block's gates
// read at its first cell), its h without.
template <typename scalar_t>
C10_ALWAYS_INLINE void previous_recurrent(const TinyLayer<scalar_t>& layer, const StepRows& steps,
                                          const BackwardBuffers<scalar_t>& io, int64_t b,
                                          int64_t t, scalar_t* r) {
  const int64_t R = layer.R, H = layer.H, K = layer.K, S = layer.S;
  if (t == 0) {
    for (int64_t c = 0; c < R; ++c) {
      r[c] = io.h0 == nullptr ? scalar_t(0) : io.h0[b * R + c];
    }
    return;
  }
  const int64_t previous_row = steps.offset[t - 1] + b;
  if (layer.feedback) {
    const scalar_t* previous_gates = io.gates + previous_row * kNumGates * H;
    for (int64_t k = 0; k < K; ++k) {
      r[k] = previous_gates[kInputGate * H + k * S];
      r[K + H + k] = previous_gates[kOutputGate * H + k * S];
    }
  }
  const scalar_t* previous_output = io.output + previous_row * H;
  scalar_t* hidden = r + layer.hidden_offset;
  for (int64_t j = 0; j < H; ++j) {  // element by element: a few values, less than a memmove call
    hidden[j] = previous_output[j];
  }
}

// The exact backward (BPTT) of batch row b, its steps in reverse; V vectors hold one gate's
// cells. Adds the row's weight gradients into `grad_columns` ((C, Gp): dW by columns) and
// `grad_bias` (Gp). (The truncated backward: truncated_backward_row.)
template <typename scalar_t, int64_t V>
void backward_row(const TinyLayer<scalar_t>& layer, const StepRows& steps, int64_t b,
                  int64_t length, const BackwardBuffers<scalar_t>& io, scalar_t* grad_columns,
                  scalar_t* grad_bias, scalar_t* scratch) {
  using Vec = typename TinyLayer<scalar_t>::Vec;
  constexpr int64_t L = TinyLayer<scalar_t>::L;
  const int64_t I = layer.I, H = layer.H, S = layer.S, K = layer.K, G = layer.G, R = layer.R,
                C = layer.C, Gp = layer.Gp, Cp = layer.Cp, Hp = layer.Hp;
  const bool feedback = layer.feedback;
  // scratch: the step's input [x_t | r_{t-1}] (Cp), its error (Cp + Hp), the net errors (Gp, zero
  // past G), then with memory cell blocks the per-cell errors of the input and output gates
  // before their sigmoid's derivative (Hp each), which a block sums; with wide inputs then the net
  // errors of every step.
  scalar_t* step_input = scratch;
  scalar_t* step_input_error = step_input + Cp;
  scalar_t* net_error = step_input_error + Cp + Hp;
  scalar_t* input_gate_error = net_error + Gp;
  scalar_t* output_gate_error = input_gate_error + Hp;
  std::fill(scratch, output_gate_error + Hp, scalar_t(0));
  // With wide inputs, every step's net errors (length, Gp), for the input weights' gradient.
  scalar_t* step_net_errors = output_gate_error + Hp;
  // The error of r_t: from h_n at the last step, from step t + 1 at the others. Its parts: input
  // gates, h_t, output gates.
  scalar_t* recurrent_error = step_input_error + I;
  for (int64_t c = 0; c < R; ++c) {
    recurrent_error[c] = io.grad_h_n[b * R + c];
  }
  const scalar_t* hidden_error = recurrent_error + layer.hidden_offset;
  Vec state_error[V];
  for (int64_t v = 0; v < V; ++v) {
    state_error[v] = Vec::loadu(io.grad_s_n + b * H + v * L, std::min(L, H - v * L));
  }
  for (int64_t t = length - 1; t >= 0; --t) {
    const int64_t row = steps.offset[t] + b;
    const scalar_t* gates = io.gates + row * kNumGates * H;
    const scalar_t* squashed = io.squashed_state + row * H;
    const scalar_t* grad_output = io.grad_output + row * H;
    for (int64_t v = 0; v < V; ++v) {
      const int64_t j = v * L, count = std::min(L, H - j);
      const Vec dh = Vec::loadu(grad_output + j, count) + Vec::loadu(hidden_error + j, count);
      const Vec i = Vec::loadu(gates + kInputGate * H + j, count);
      const Vec z = Vec::loadu(gates + kCellInput * H + j, count);
      const Vec o = Vec::loadu(gates + kOutputGate * H + j, count);
      const Vec hs = Vec::loadu(squashed + j, count);
      const NetErrors<Vec> errors =
          cell_backward(dh, state_error[v], i, z, o, hs, layer.g, layer.h);
      store_lanes(errors.cell_input, net_error + K + j, count);
      if (S == 1) {
        // Each cell its own gates (K = H); with gate feedback they also get the error of their
        // outputs in r_t, through the sigmoid's derivative y (1 - y).
        Vec input_gate = errors.input_gate, output_gate = errors.output_gate;
        if (feedback) {
          input_gate = input_gate + Vec::loadu(recurrent_error + j, count) * i * (Vec(1) - i);
          output_gate = output_gate +
                        Vec::loadu(recurrent_error + K + H + j, count) * o * (Vec(1) - o);
        }
        store_lanes(input_gate, net_error + j, count);
        store_lanes(output_gate, net_error + K + H + j, count);
      } else {
        errors.input_gate.store(input_gate_error + j);
        errors.output_gate.store(output_gate_error + j);
      }
    }
    if (S > 1) {
      // A block's gate gets the errors of all its cells (and, with gate feedback, of its output
      // in r_t, through the sigmoid's derivative).
      for (int64_t k = 0; k < K; ++k) {
        const scalar_t i = gates[kInputGate * H + k * S], o = gates[kOutputGate * H + k * S];
        scalar_t input_gate = feedback ? recurrent_error[k] * i * (1 - i) : scalar_t(0);
        scalar_t output_gate = feedback ? recurrent_error[K + H + k] * o * (1 - o) : scalar_t(0);
        for (int64_t j = k * S; j < (k + 1) * S; ++j) {
          input_gate += input_gate_error[j];
          output_gate += output_gate_error[j];
        }
        net_error[k] = input_gate;
        net_error[K + H + k] = output_gate;
      }
    }
    // The step's input [x_t | r_{t-1}] (with wide inputs, r_{t-1} only: x_t's part waits).
    for (int64_t c = 0; c < (layer.wide ? 0 : I); ++c) {
      step_input[c] = io.input[row * I + c];
    }
    previous_recurrent(layer, steps, io, b, t, step_input + I);
    // dW += dnet [x_t | r_{t-1}]^T, db += dnet.
    for (int64_t v = 0; v < Gp; v += L) {
      (Vec::loadu(grad_bias + v) + Vec::loadu(net_error + v)).store(grad_bias + v);
    }
    if (layer.wide) {
      std::copy(net_error, net_error + Gp, step_net_errors + t * Gp);
    }
    for (int64_t c = layer.wide ? I : 0; c < C; ++c) {
      const Vec value(step_input[c]);
      scalar_t* column = grad_columns + c * Gp;
      for (int64_t v = 0; v < Gp; v += L) {
        at::vec::fmadd(value, Vec::loadu(net_error + v), Vec::loadu(column + v)).store(column + v);
      }
    }
    // d[x_t | r_{t-1}] = dnet [W_ih | W_hh]: the input's error, and the error of r_{t-1}, which
    // step t - 1 reads.
    for (int64_t c = 0; c < Cp; c += L) {
      Vec sum(0);
      for (int64_t k = 0; k < G; ++k) {
        sum = at::vec::fmadd(Vec(net_error[k]), Vec::loadu(layer.by_rows.data() + k * Cp + c),
                             sum);
      }
      sum.store(step_input_error + c);
    }
    if (io.grad_input != nullptr) {
      for (int64_t c = 0; c < I; ++c) {
        io.grad_input[row * I + c] = step_input_error[c];
      }
    }
  }
  for (int64_t v = 0; v < V; ++v) {
    store_lanes(state_error[v], io.grad_s0 + b * H + v * L, std::min(L, H - v * L));
  }
  for (int64_t c = 0; c < R; ++c) {
    io.grad_h0[b * R + c] = recurrent_error[c];
  }
  if (layer.wide) {
    add_input_weight_gradients(layer, steps, b, 0, length, io.input, step_net_errors,
                               grad_columns);
  }
}

// The truncated backward of one row in three passes over blocks of its steps (latest block
// first), for rows that are not lane-packed. Truncated, a step's error reaches no other step but
// through the cell state, so only the first pass walks the steps in order, carrying the state's
// error; the other two are independent per step. Done per step, as the exact backward
// (backward_row) must, the gate-row sums are scalar stores read back at once as a vector (a store
// that cannot be forwarded) and each step's weight gradients go through memory; here a block's
// values stay in buffers of the scratch and its weight gradients in registers
// (benchmarks/bench.py --paper-layers: the paper's single-sequence layers).
constexpr int64_t kTruncatedBlockSteps = 128;

// The columns of one step's row of `seen` (truncated_backward_row): [x_t | r_{t-1} | 1] (the
// wide-input branch leaves x_t out), rounded up to whole chunks of column_products.
constexpr int64_t kProductColumns = 8;

template <typename scalar_t>
int64_t seen_width(const TinyLayer<scalar_t>& layer) {
  return (layer.wide ? 0 : layer.I) + layer.R + 1;
}

template <typename scalar_t>
int64_t truncated_scratch_size(const TinyLayer<scalar_t>& layer) {
  const int64_t stride = round_up(seen_width(layer), kProductColumns);
  return kTruncatedBlockSteps * (kNumGates * layer.Hp + layer.Gp + stride);
}

// columns[c * Gp + v] += sum over n steps s of seen[s * stride + c] * errors[s * Gp + v] for the
// `width` columns c (stride a multiple of kProductColumns, zero past width) and every lane v of
// Gp: kProductColumns independent sums in registers, each step's error vector loaded once.
template <typename scalar_t>
void add_column_products(const scalar_t* seen, int64_t stride, int64_t width,
                         const scalar_t* errors, int64_t Gp, int64_t n, scalar_t* columns) {
  using Vec = typename TinyLayer<scalar_t>::Vec;
  constexpr int64_t L = TinyLayer<scalar_t>::L;
  for (int64_t v = 0; v < Gp; v += L) {
    for (int64_t first = 0; first < width; first += kProductColumns) {
      Vec sum[kProductColumns];
      for (int64_t c = 0; c < kProductColumns; ++c) {
        sum[c] = Vec(0);
      }
      for (int64_t s = 0; s < n; ++s) {
        const Vec error = Vec::loadu(errors + s * Gp + v);
        const scalar_t* values = seen + s * stride + first;
        for (int64_t c = 0; c < kProductColumns; ++c) {
          sum[c] = at::vec::fmadd(Vec(values[c]), error, sum[c]);
        }
      }
      for (int64_t c = 0; c < std::min(kProductColumns, width - first); ++c) {
        scalar_t* column = columns + (first + c) * Gp + v;
        (Vec::loadu(column) + sum[c]).store(column);
      }
    }
  }
}

// The truncated backward of batch row b; V vectors hold one gate's cells. Adds the row's weight
// gradients into `grad_columns` ((C + 1, Gp): dW by columns, then db). scratch:
// truncated_scratch_size values.
template <typename scalar_t, int64_t V>
void truncated_backward_row(const TinyLayer<scalar_t>& layer, const StepRows& steps, int64_t b,
                            int64_t length, const BackwardBuffers<scalar_t>& io,
                            scalar_t* grad_columns, scalar_t* scratch) {
  using Vec = typename TinyLayer<scalar_t>::Vec;
  constexpr int64_t L = TinyLayer<scalar_t>::L;
  const int64_t I = layer.I, H = layer.H, S = layer.S, K = layer.K, G = layer.G, R = layer.R,
                Gp = layer.Gp, Hp = layer.Hp, Cp = layer.Cp;
  const bool wide = layer.wide, feedback = layer.feedback;
  const int64_t width = seen_width(layer), stride = round_up(width, kProductColumns);
  // A block's buffers: each step's cell-level errors of the input gate, cell input and output
  // gate (3 Hp), its net errors by gate row (Gp, zero past G), and what its net inputs saw
  // (stride, zero past width).
  const int64_t block = std::min(kTruncatedBlockSteps, length);
  scalar_t* cell_errors = scratch;
  scalar_t* net_errors = cell_errors + block * kNumGates * Hp;
  scalar_t* seen = net_errors + block * Gp;
  std::fill(net_errors, seen + block * stride, scalar_t(0));
  const scalar_t* const input = io.input;
  // grad_h_n reaches the last step only: truncated, r_{t-1} gets no error from step t.
  const scalar_t* recurrent_error = io.grad_h_n + b * R;
  const scalar_t* hidden_error = recurrent_error + layer.hidden_offset;
  Vec state_error[V];
  for (int64_t v = 0; v < V; ++v) {
    state_error[v] = Vec::loadu(io.grad_s_n + b * H + v * L, std::min(L, H - v * L));
  }
  for (int64_t end = length; end > 0; end -= block) {
    const int64_t begin = std::max<int64_t>(0, end - block);
    // 1. The steps in reverse: the state's error, and the cell-level errors.
    for (int64_t t = end - 1; t >= begin; --t) {
      const int64_t row = steps.offset[t] + b;
      const scalar_t* gates = io.gates + row * kNumGates * H;
      const scalar_t* squashed = io.squashed_state + row * H;
      const scalar_t* grad_output = io.grad_output + row * H;
      scalar_t* errors = cell_errors + (t - begin) * kNumGates * Hp;
      for (int64_t v = 0; v < V; ++v) {
        const int64_t j = v * L, count = std::min(L, H - j);
        Vec dh = Vec::loadu(grad_output + j, count);
        if (t == length - 1) {
          dh = dh + Vec::loadu(hidden_error + j, count);
        }
        const NetErrors<Vec> step = cell_backward(
            dh, state_error[v], Vec::loadu(gates + kInputGate * H + j, count),
            Vec::loadu(gates + kCellInput * H + j, count),
            Vec::loadu(gates + kOutputGate * H + j, count), Vec::loadu(squashed + j, count),
            layer.g, layer.h);
        step.input_gate.store(errors + kInputGate * Hp + j);
        step.cell_input.store(errors + kCellInput * Hp + j);
        step.output_gate.store(errors + kOutputGate * Hp + j);
      }
      // Element by element: these runs are a few values long, shorter than a memmove call's cost.
      scalar_t* values = seen + (t - begin) * stride;
      if (!wide) {
        for (int64_t c = 0; c < I; ++c) {
          values[c] = input[row * I + c];
        }
        values += I;
      }
      previous_recurrent(layer, steps, io, b, t, values);
      values[R] = scalar_t(1);  // db: the bias's column
    }
    // 2. The net errors by gate row: a block's gate sums its cells' errors.
    for (int64_t s = 0; s < end - begin; ++s) {
      const scalar_t* errors = cell_errors + s * kNumGates * Hp;
      scalar_t* net = net_errors + s * Gp;
      for (int64_t k = 0; k < K; ++k) {
        scalar_t input_gate(0), output_gate(0);
        for (int64_t j = k * S; j < (k + 1) * S; ++j) {
          input_gate += errors[kInputGate * Hp + j];
          output_gate += errors[kOutputGate * Hp + j];
        }
        net[k] = input_gate;
        net[K + H + k] = output_gate;
      }
      for (int64_t j = 0; j < H; ++j) {
        net[K + j] = errors[kCellInput * Hp + j];
      }
    }
    if (feedback && end == length) {
      // The last step's gate outputs are part of r_T, whose error grad_h_n gives: through the
      // sigmoid's derivative y (1 - y) into their net inputs.
      const scalar_t* gates = io.gates + (steps.offset[length - 1] + b) * kNumGates * H;
      scalar_t* net = net_errors + (length - 1 - begin) * Gp;
      for (int64_t k = 0; k < K; ++k) {
        const scalar_t i = gates[kInputGate * H + k * S], o = gates[kOutputGate * H + k * S];
        net[k] += recurrent_error[k] * i * (1 - i);
        net[K + H + k] += recurrent_error[K + H + k] * o * (1 - o);
      }
    }
    // 3. dW += dnet [x_t | r_{t-1}]^T and db += dnet over the block; the input's error.
    add_column_products(seen, stride, width, net_errors, Gp, end - begin,
                        grad_columns + (wide ? I : 0) * Gp);
    if (wide) {
      add_input_weight_gradients(layer, steps, b, begin, end, io.input, net_errors,
                                 grad_columns);
    }
    if (io.grad_input != nullptr) {
      for (int64_t t = begin; t < end; ++t) {
        const scalar_t* net = net_errors + (t - begin) * Gp;
        scalar_t* grad_input = io.grad_input + (steps.offset[t] + b) * I;
        for (int64_t c = 0; c < I; c += L) {
          Vec sum(0);
          for (int64_t k = 0; k < G; ++k) {
            sum = at::vec::fmadd(Vec(net[k]), Vec::loadu(layer.by_rows.data() + k * Cp + c), sum);
          }
          store_lanes(sum, grad_input + c, std::min(L, I - c));
        }
      }
    }
  }
  for (int64_t v = 0; v < V; ++v) {
    store_lanes(state_error[v], io.grad_s0 + b * H + v * L, std::min(L, H - v * L));
  }
  std::fill(io.grad_h0 + b * R, io.grad_h0 + (b + 1) * R, scalar_t(0));
}

#if defined(CPU_CAPABILITY_AVX512)
// The truncated backward of P lane-packed rows of the same length (forward_packed's layout).
// Adds row p's weight gradients into sums[p] ((C + 1, Gp): dW by columns, then db), as
// backward_row adds them; each lane keeps its cell's sums over the steps, and a block's cells are
// summed into the block's gate rows at the end.
void backward_packed(const TinyLayer<float>* const* layers, const StepRows& steps,
                     const int64_t* bs, int64_t P, int64_t length,
                     const BackwardBuffers<float>* const* io, float* const* sums) {
  using Vec = at::vec::Vectorized<float>;
  constexpr int64_t L = 16;
  const TinyLayer<float>& shape = *layers[0];
  const int64_t I = shape.I, H = shape.H, R = shape.R, C = shape.C, Gp = shape.Gp,
                Hp = shape.Hp;
  const bool feedback = shape.feedback;
  const PackedLanes lanes(shape, P);
  // The input's error dx_t = W_ih^T dnet_t, when asked for: each row's input weights in its lanes,
  // (I, 3) vectors, a block's gate weights in each of its cells' lanes (its cells' errors then sum
  // to the block gate's).
  const bool input_error = io[0]->grad_input != nullptr;
  std::vector<float> input_weights(input_error ? I * kNumGates * L : 0, 0.0f);
  for (int64_t p = 0; p < P && input_error; ++p) {
    for (int64_t c = 0; c < I; ++c) {
      for (int64_t gate = 0; gate < kNumGates; ++gate) {
        for (int64_t j = 0; j < H; ++j) {
          input_weights[(c * kNumGates + gate) * L + p * H + j] =
              layers[p]->by_cells[c * kNumGates * Hp + gate * Hp + j];
        }
      }
    }
  }
  const auto load_rows = [&](const auto& row_data) {
    __m512 value = _mm512_setzero_ps();
    for (int64_t p = 0; p < P; ++p) {
      value = lanes.load(value, row_data(p), p);
    }
    return Vec(value);
  };
  // The error of r_{T-1} (from h_n), in the lanes where its parts act: truncated, it reaches
  // the last step only.
  alignas(64) float last_error[kNumGates][L] = {{0}};
  alignas(64) float start[kNumGates][L] = {{0}};  // r_{-1} = h0, placed as the permutes read it
  for (int64_t p = 0; p < P; ++p) {
    lanes.spread(io[p]->grad_h_n + bs[p] * R, p, last_error);
    if (io[p]->h0 != nullptr) {
      lanes.spread(io[p]->h0 + bs[p] * R, p, start);
    }
  }
  Vec state_error = load_rows([&](int64_t p) { return io[p]->grad_s_n + bs[p] * H; });
  // Per lane: dW by columns, (C, 3) vectors, then db, 3 vectors.
  std::vector<Vec> gradient((C + 1) * kNumGates, Vec(0));
  for (int64_t t = length - 1; t >= 0; --t) {
    const int64_t offset = steps.offset[t];
    const auto gate_rows = [&](int64_t gate) {
      return load_rows([&](int64_t p) {
        return io[p]->gates + (offset + bs[p]) * kNumGates * H + gate * H;
      });
    };
    const Vec i = gate_rows(kInputGate), z = gate_rows(kCellInput), o = gate_rows(kOutputGate);
    const Vec hs = load_rows([&](int64_t p) { return io[p]->squashed_state + (offset + bs[p]) * H; });
    Vec dh = load_rows([&](int64_t p) { return io[p]->grad_output + (offset + bs[p]) * H; });
    if (t == length - 1) {
      dh = dh + Vec::loadu(last_error[1]);
    }
    NetErrors<Vec> errors = cell_backward(dh, state_error, i, z, o, hs, shape.g, shape.h);
    if (t == length - 1 && feedback) {
      errors.input_gate = errors.input_gate + Vec::loadu(last_error[0]) * i * (Vec(1) - i);
      errors.output_gate = errors.output_gate + Vec::loadu(last_error[2]) * o * (Vec(1) - o);
    }
    const Vec net_errors[kNumGates] = {errors.input_gate, errors.cell_input, errors.output_gate};
    for (int64_t c = 0; c < I && input_error; ++c) {
      const float* w = input_weights.data() + c * kNumGates * L;
      Vec sum = net_errors[0] * Vec::loadu(w);
      sum = at::vec::fmadd(net_errors[1], Vec::loadu(w + L), sum);
      sum = at::vec::fmadd(net_errors[2], Vec::loadu(w + 2 * L), sum);
      for (int64_t p = 0; p < P; ++p) {
        io[p]->grad_input[(offset + bs[p]) * I + c] =
            _mm512_mask_reduce_add_ps(lanes.row_mask[p], sum);
      }
    }
    Vec* bias_gradient = gradient.data() + C * kNumGates;
    for (int64_t gate = 0; gate < kNumGates; ++gate) {
      bias_gradient[gate] = bias_gradient[gate] + net_errors[gate];
    }
    const auto add_column = [&](int64_t c, const Vec& column) {
      Vec* column_gradient = gradient.data() + c * kNumGates;
      for (int64_t gate = 0; gate < kNumGates; ++gate) {
        column_gradient[gate] = at::vec::fmadd(column, net_errors[gate], column_gradient[gate]);
      }
    };
    for (int64_t c = 0; c < I; ++c) {
      add_column(c, Vec(lanes.input_column(io, bs, offset, I, c)));
    }
    Vec previous[kNumGates];
    if (t == 0) {
      for (int64_t source = 0; source < kNumGates; ++source) {
        previous[source] = Vec::loadu(start[source]);
      }
    } else {
      const int64_t previous_offset = steps.offset[t - 1];
      previous[1] = load_rows([&](int64_t p) {
        return io[p]->output + (previous_offset + bs[p]) * H;
      });
      if (feedback) {
        for (const int64_t gate : {kInputGate, kOutputGate}) {
          previous[gate == kInputGate ? 0 : 2] = load_rows([&](int64_t p) {
            return io[p]->gates + (previous_offset + bs[p]) * kNumGates * H + gate * H;
          });
        }
      }
    }
    for (int64_t k = 0; k < R; ++k) {
      add_column(I + k, Vec(_mm512_permutexvar_ps(lanes.permutes[k], previous[lanes.source(k)])));
    }
  }
  alignas(64) float sum_lanes[L];
  for (int64_t p = 0; p < P; ++p) {
    lanes.store(state_error, io[p]->grad_s0 + bs[p] * H, p);
    for (int64_t k = 0; k < R; ++k) {
      io[p]->grad_h0[bs[p] * R + k] = length == 0 ? io[p]->grad_h_n[bs[p] * R + k] : 0.0f;
    }
  }
  for (int64_t c = 0; c <= C; ++c) {  // c == C: the biases
    for (int64_t gate = 0; gate < kNumGates; ++gate) {
      gradient[c * kNumGates + gate].store(sum_lanes);
      for (int64_t p = 0; p < P; ++p) {
        for (int64_t j = 0; j < H; ++j) {
          sums[p][c * Gp + shape.gate_row(gate, j)] += sum_lanes[p * H + j];
        }
      }
    }
  }
}
#endif

// Member e's rows form chunks of their own; each member's weight gradients are the sum of its
// chunks in order, whatever the thread count.
template <typename scalar_t>
void tiny_backward_typed(const std::vector<BackwardArgs>& members, const StepRows& steps,
                         LayerGradients& gradients) {
  const int64_t E = static_cast<int64_t>(members.size());
  const bool exact = !members.front().layer.options.truncate;
  const bool input_wanted = members.front().wanted.input;
  std::vector<TinyLayer<scalar_t>> layers;
  std::vector<BackwardBuffers<scalar_t>> io;
  std::vector<at::Tensor> inputs;  // the contiguous tensors io points into
  layers.reserve(E);
  for (int64_t e = 0; e < E; ++e) {
    const BackwardArgs& args = members[e];
    const LayerArgs& layer_args = args.layer;
    layers.emplace_back(layer_args, /*backward_products=*/exact || input_wanted);
    // Incoming gradients are often expanded (stride 0) views, e.g. from a sum().
    const at::Tensor grad_output = args.grad_output.contiguous();
    const at::Tensor grad_h_n = args.grad_h_n.contiguous();
    const at::Tensor grad_s_n = args.grad_s_n.contiguous();
    const at::Tensor input = layer_args.input.contiguous();
    const at::Tensor h0 = present(layer_args.h0) ? layer_args.h0->contiguous() : at::Tensor();
    const at::Tensor output = args.saved.output.contiguous();
    const at::Tensor squashed_state = args.saved.squashed_state.contiguous();
    const at::Tensor gates = args.saved.gates.contiguous();
    inputs.insert(inputs.end(),
                  {grad_output, grad_h_n, grad_s_n, input, h0, output, squashed_state, gates});
    io.push_back({grad_output.const_data_ptr<scalar_t>(),
                  grad_h_n.const_data_ptr<scalar_t>(),
                  grad_s_n.const_data_ptr<scalar_t>(),
                  input.const_data_ptr<scalar_t>(),
                  h0.defined() ? h0.const_data_ptr<scalar_t>() : nullptr,
                  output.const_data_ptr<scalar_t>(),
                  squashed_state.const_data_ptr<scalar_t>(),
                  gates.const_data_ptr<scalar_t>(),
                  gradients.grad_input.defined()
                      ? member_data<scalar_t>(gradients.grad_input, e, E) : nullptr,
                  member_data<scalar_t>(gradients.grad_h0, e, E),
                  member_data<scalar_t>(gradients.grad_s0, e, E)});
  }
  const TinyLayer<scalar_t>& layer = layers.front();  // the members' sizes are the same
  const std::vector<int64_t> lengths = sequence_lengths(steps);
  constexpr int64_t L = TinyLayer<scalar_t>::L;
  const int64_t chunks = (steps.batch + kRowsPerChunk - 1) / kRowsPerChunk;  // per member
  const int64_t sums_per_chunk = (layer.C + 1) * layer.Gp;  // dW by columns, then db
  std::vector<scalar_t> sums(E * chunks * sums_per_chunk, scalar_t(0));
  const int64_t scratch_size =
      exact ? 2 * layer.Cp + layer.Gp + 3 * layer.Hp + (layer.wide ? steps.steps() * layer.Gp : 0)
            : truncated_scratch_size(layer);
  int64_t packed = 0;
#if defined(CPU_CAPABILITY_AVX512)
  if constexpr (std::is_same_v<scalar_t, float>) {
    packed = exact ? 0 : packed_rows(layer);
  if (packed > 1) {
    // One row per member (ensembles): each task packs up to `packed` members' rows. More rows:
    // each task (a chunk of a member) packs its rows. Either way a task's rows write sums no other
    // task writes, in an order fixed by the rows alone.
    const bool by_members = steps.batch == 1;
    const int64_t tasks = by_members ? (E + packed - 1) / packed : E * chunks;
    at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> scratch(scratch_size);
      for (int64_t task = begin; task < end; ++task) {
        int64_t rows[kRowsPerChunk * kMaxPackedRows];  // as (member, b) pairs in flat indices
        int64_t count = 0;
        if (by_members) {
          for (int64_t e = task * packed; e < std::min(E, (task + 1) * packed); ++e) {
            rows[count++] = e;
          }
        } else {
          const int64_t e = task / chunks, chunk = task % chunks;
          for (int64_t b = chunk * kRowsPerChunk;
               b < std::min(steps.batch, (chunk + 1) * kRowsPerChunk); ++b) {
            rows[count++] = e * steps.batch + b;
          }
        }
        for (int64_t first = 0; first < count;) {
          const TinyLayer<float>* group_layers[kMaxPackedRows];
          const BackwardBuffers<float>* group_io[kMaxPackedRows];
          float* group_sums[kMaxPackedRows];
          int64_t bs[kMaxPackedRows];
          int64_t n = 0;
          const int64_t length = lengths[rows[first] % steps.batch];
          for (; n < packed && first + n < count &&
                 lengths[rows[first + n] % steps.batch] == length; ++n) {
            const int64_t e = rows[first + n] / steps.batch;
            bs[n] = rows[first + n] % steps.batch;
            group_layers[n] = &layers[e];
            group_io[n] = &io[e];
            group_sums[n] = sums.data() + (e * chunks + bs[n] / kRowsPerChunk) * sums_per_chunk;
          }
          if (n > 1) {
            backward_packed(group_layers, steps, bs, n, length, group_io, group_sums);
          } else {
            // A row alone fills no more lanes packed.
            with_cell_vectors<float>(layer.Hp / L, [&](auto vectors) {
              truncated_backward_row<float, decltype(vectors)::value>(
                  *group_layers[0], steps, bs[0], length, *group_io[0], group_sums[0],
                  scratch.data());
            });
          }
          first += n;
        }
      }
    });
  }
  }
#endif
  with_cell_vectors<scalar_t>(layer.Hp / L, [&](auto vectors) {
    if (packed > 1) {
      return;
    }
    at::parallel_for(0, E * chunks, 1, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> scratch(scratch_size);
      for (int64_t task = begin; task < end; ++task) {
        const int64_t e = task / chunks, chunk = task % chunks;
        scalar_t* grad_columns = sums.data() + task * sums_per_chunk;
        scalar_t* grad_bias = grad_columns + layer.C * layer.Gp;
        const int64_t b_end = std::min(steps.batch, (chunk + 1) * kRowsPerChunk);
        for (int64_t b = chunk * kRowsPerChunk; b < b_end; ++b) {
          if (exact) {
            backward_row<scalar_t, decltype(vectors)::value>(layers[e], steps, b, lengths[b],
                                                             io[e], grad_columns, grad_bias,
                                                             scratch.data());
          } else {
            truncated_backward_row<scalar_t, decltype(vectors)::value>(
                layers[e], steps, b, lengths[b], io[e], grad_columns, scratch.data());
          }
        }
      }
    });
  });
  const int64_t G = layer.G, I = layer.I, R = layer.R, Gp = layer.Gp;
  for (int64_t e = 0; e < E; ++e) {
    scalar_t* member_sums = sums.data() + e * chunks * sums_per_chunk;
    for (int64_t chunk = 1; chunk < chunks; ++chunk) {
      const scalar_t* chunk_sums = member_sums + chunk * sums_per_chunk;
      for (int64_t k = 0; k < sums_per_chunk; ++k) {
        member_sums[k] += chunk_sums[k];
      }
    }
    const auto fill = [&](const at::Tensor& out, int64_t first_column, int64_t columns) {
      scalar_t* data = member_data<scalar_t>(out, e, E);
      for (int64_t k = 0; k < G; ++k) {
        for (int64_t c = 0; c < columns; ++c) {
          data[k * columns + c] = member_sums[(first_column + c) * Gp + k];
        }
      }
    };
    if (gradients.grad_weight_ih.defined()) {
      fill(gradients.grad_weight_ih, 0, I);
    }
    if (gradients.grad_weight_hh.defined()) {
      fill(gradients.grad_weight_hh, I, R);
    }
    if (gradients.grad_bias.defined()) {
      std::copy(member_sums + layer.C * Gp, member_sums + layer.C * Gp + G,
                member_data<scalar_t>(gradients.grad_bias, e, E));
    }
  }
}

}  // namespace

namespace {

// A result of shape `dims` per member, the members in front (`members` E, or nullopt: one layer,
// no member dimension).
at::Tensor empty_for_members(std::vector<int64_t> dims, std::optional<int64_t> members,
                             const at::TensorOptions& options) {
  if (members) {
    dims.insert(dims.begin(), *members);
  }
  return at::empty(dims, options);
}

ForwardResult allocate_forward(const LayerArgs& args, const StepRows& steps, bool save,
                               std::optional<int64_t> members) {
  const int64_t N = args.sizes.rows.expect_int(), H = args.sizes.hidden_size.expect_int();
  const int64_t B = steps.batch;
  const auto shape = [&](std::vector<int64_t> dims) {
    return empty_for_members(std::move(dims), members, args.input.options());
  };
  const auto per_step = [&](int64_t width) {
    return args.sizes.packed ? shape({N, width}) : shape({steps.steps(), B, width});
  };
  ForwardResult result;
  result.h_n = shape({B, args.sizes.recurrent_size.expect_int()});
  result.s_n = shape({B, H});
  result.saved.output = per_step(H);
  if (save) {
    result.saved.squashed_state = per_step(H);
    result.saved.gates = per_step(kNumGates * H);
  }
  return result;
}

LayerGradients allocate_gradients(const BackwardArgs& args, const StepRows& steps,
                                  std::optional<int64_t> members) {
  const LayerArgs& layer = args.layer;
  const int64_t G = layer.sizes.gate_rows.expect_int(), H = layer.sizes.hidden_size.expect_int(),
                R = layer.sizes.recurrent_size.expect_int();
  const auto shape = [&](std::vector<int64_t> dims) {
    return empty_for_members(std::move(dims), members, layer.input.options());
  };
  LayerGradients gradients;
  if (args.wanted.input) {
    gradients.grad_input = shape(layer.input.sizes().vec());
  }
  if (args.wanted.weight_ih) {
    gradients.grad_weight_ih = shape({G, layer.sizes.input_size.expect_int()});
  }
  if (args.wanted.weight_hh) {
    gradients.grad_weight_hh = shape({G, R});
  }
  if (args.wanted.bias) {
    gradients.grad_bias = shape({G});
  }
  gradients.grad_h0 = shape({steps.batch, R});
  gradients.grad_s0 = shape({steps.batch, H});
  return gradients;
}

ForwardResult run_tiny_forward(const std::vector<LayerArgs>& members, const StepRows& steps,
                               bool save, std::optional<int64_t> member_dimension) {
  const LayerArgs& first = members.front();
  ForwardResult result = allocate_forward(first, steps, save, member_dimension);
  AT_DISPATCH_FLOATING_TYPES(first.input.scalar_type(), "lstm1997_tiny_forward_cpu", [&] {
    tiny_forward_typed<scalar_t>(members, steps, result, save);
  });
  return result;
}

LayerGradients run_tiny_backward(const std::vector<BackwardArgs>& members,
                                 const StepRows& steps, std::optional<int64_t> member_dimension) {
  const BackwardArgs& first = members.front();
  LayerGradients gradients = allocate_gradients(first, steps, member_dimension);
  AT_DISPATCH_FLOATING_TYPES(first.layer.input.scalar_type(), "lstm1997_tiny_backward_cpu", [&] {
    tiny_backward_typed<scalar_t>(members, steps, gradients);
  });
  return gradients;
}

}  // namespace

ForwardResult tiny_layer_forward(const LayerArgs& args, const StepRows& steps, bool save) {
  return run_tiny_forward({args}, steps, save, std::nullopt);
}

LayerGradients tiny_layer_backward(const BackwardArgs& args, const StepRows& steps) {
  return run_tiny_backward({args}, steps, std::nullopt);
}

ForwardResult tiny_ensemble_forward(const std::vector<LayerArgs>& members,
                                    const StepRows& steps) {
  return run_tiny_forward(members, steps, /*save=*/true,
                          static_cast<int64_t>(members.size()));
}

LayerGradients tiny_ensemble_backward(const std::vector<BackwardArgs>& members,
                                      const StepRows& steps) {
  return run_tiny_backward(members, steps, static_cast<int64_t>(members.size()));
}

}  // namespace cpu
}  // namespace lstm1997
