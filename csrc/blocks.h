// Memory cell blocks: the mapping between the block layout of the weights (K + H + K gate rows)
// and the per-cell layout (3H) of the pointwise kernels (see lstm1997.h). Backend-neutral ATen
// code: every backend's kernels use it around their matrix products.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace lstm1997 {

// Column index (3H) that repeats each block's gates for its cells: net (..., G) indexed with it
// along its last dimension gives the per-cell layout (..., 3H).
at::Tensor block_expansion_index(int64_t hidden_size, int64_t cells_per_block,
                                 const at::TensorOptions& options);

// The reverse for errors: along `dim`, a per-cell layout [input gate | cell input] (2H) or
// [input gate | cell input | output gate] (3H) becomes the block layout (K + H or G rows) by
// summing the errors of the S copies of each shared gate (a shared weight's gradient is the sum
// over its uses). Returns `per_cell` itself when cells_per_block is 1.
at::Tensor sum_block_gates(const at::Tensor& per_cell, int64_t hidden_size, int64_t cells_per_block,
                           int64_t dim);

// Gate feedback (lstm1997.h): the recurrent state r = [input gates (K) | cell outputs (H) |
// output gates (K)] of some rows from their per-cell activated gates (..., 3H) and cell outputs
// (..., H), a block's gate read at its first cell: a new (..., K + H + K) tensor.
at::Tensor recurrent_state(const at::Tensor& cell_gates, const at::Tensor& hidden,
                           int64_t cells_per_block);

}  // namespace lstm1997
