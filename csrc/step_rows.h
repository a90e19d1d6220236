// Which rows of the 2-D (rows, features) layout of input and output each time step occupies, read
// on the host from batch_sizes: the kernels' time loops walk it, so dense and packed input share
// every loop.
#pragma once

#include "layer_args.h"

#include <cstdint>
#include <vector>

namespace lstm1997 {

// Dense input has B rows per step. Packed input (torch.nn.utils.rnn.PackedSequence, sequences
// sorted by decreasing length) has batch_sizes[t] rows at step t: always the first batch_sizes[t]
// sequences of the batch, so the rows active at step t+1 are a prefix of those active at step t.
struct StepRows {
  std::vector<int64_t> offset;  // first row of step t
  std::vector<int64_t> count;   // rows of step t, non-increasing in t
  int64_t batch = 0;
  bool dense = true;

  int64_t steps() const { return static_cast<int64_t>(count.size()); }
  // Rows at step t+1 (0 past the end): sequence b takes its last step at t iff
  // active(t+1) <= b < active(t).
  int64_t active_after(int64_t t) const { return t + 1 < steps() ? count[t + 1] : 0; }
};

// Reads (and checks the values of) the call's batch_sizes; for dense input builds the uniform
// layout.
StepRows step_rows(const LayerArgs& args);

// Row indices for index_select and index_add, as host vectors (a kernel moves them to its device):
// the row of each sequence's last step (B values), where h_n is read and grad_h_n joins;
std::vector<int64_t> last_step_rows(const StepRows& steps);
// the number of steps of each sequence (B values);
std::vector<int64_t> sequence_lengths(const StepRows& steps);
// for every row of the steps t >= 1, in row order, the row of the same sequence at step t - 1,
// whose recurrent state r_{t-1} it reads;
std::vector<int64_t> previous_step_rows(const StepRows& steps);
// for every row, its place t * B + b in a dense (T, B) grid of the same steps (packed sequences
// padded to the longest).
std::vector<int64_t> padded_rows(const StepRows& steps);

}  // namespace lstm1997
