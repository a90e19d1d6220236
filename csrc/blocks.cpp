#include "blocks.h"
#include "lstm1997.h"

#include <ATen/ATen.h>

#include <vector>

namespace lstm1997 {

at::Tensor block_expansion_index(int64_t hidden_size, int64_t cells_per_block,
                                 const at::TensorOptions& options) {
  // Made by ATen ops on the device, not from host data: under torch.func transforms a new tensor
  // is wrapped, and a wrapper has no data of its own to write.
  const int64_t H = hidden_size, S = cells_per_block, K = H / S;
  const at::Tensor cells = at::arange(H, options.dtype(at::kLong));
  const at::Tensor block = cells.div(S, "floor");
  return at::cat({block, cells + K, block + (K + H)});  // input gate, cell input, output gate
}

at::Tensor sum_block_gates(const at::Tensor& per_cell, int64_t hidden_size,
                           int64_t cells_per_block, int64_t dim) {
  if (cells_per_block == 1) {
    return per_cell;
  }
  dim = at::maybe_wrap_dim(dim, per_cell.dim());
  const int64_t H = hidden_size, S = cells_per_block, K = H / S;
  std::vector<at::Tensor> pieces;
  for (int64_t gate = 0; gate * H < per_cell.size(dim); ++gate) {
    const at::Tensor piece = per_cell.narrow(dim, gate * H, H);
    if (gate == kCellInput) {
      pieces.push_back(piece);
      continue;
    }
    // Split this dimension's H cells into (K blocks, S cells) and sum over the cells.
    std::vector<int64_t> shape = piece.sizes().vec();
    shape[dim] = S;
    shape.insert(shape.begin() + dim, K);
    pieces.push_back(piece.reshape(shape).sum(dim + 1));
  }
  return at::cat(pieces, dim);
}

namespace {

// The gate outputs of the K blocks (..., K): each block's gate at its first cell.
at::Tensor block_gate(const at::Tensor& cell_gates, int64_t hidden_size, int64_t cells_per_block,
                      Gate gate) {
  return cell_gates.narrow(-1, gate * hidden_size, hidden_size)
      .slice(-1, 0, hidden_size, cells_per_block);
}

}  // namespace

at::Tensor recurrent_state(const at::Tensor& cell_gates, const at::Tensor& hidden,
                           int64_t cells_per_block) {
  const int64_t H = hidden.size(-1);
  return at::cat({block_gate(cell_gates, H, cells_per_block, kInputGate), hidden,
                  block_gate(cell_gates, H, cells_per_block, kOutputGate)},
                 -1);
}

}  // namespace lstm1997
