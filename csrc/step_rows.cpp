#include "step_rows.h"

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace lstm1997 {

StepRows step_rows(const LayerArgs& args) {
  const LayerSizes& sizes = args.sizes;
  StepRows steps;
  const int64_t T = sizes.seq_len.expect_int();
  steps.batch = sizes.batch.expect_int();
  steps.offset.resize(T);
  steps.count.resize(T);
  if (!sizes.packed) {
    for (int64_t t = 0; t < T; ++t) {
      steps.offset[t] = t * steps.batch;
      steps.count[t] = steps.batch;
    }
    return steps;
  }
  steps.dense = false;
  const at::Tensor counts = args.batch_sizes->contiguous();
  const int64_t* count = counts.const_data_ptr<int64_t>();
  int64_t row = 0;
  for (int64_t t = 0; t < T; ++t) {
    TORCH_CHECK(count[t] >= 1 && count[t] <= (t == 0 ? steps.batch : count[t - 1]),
                "lstm1997: batch_sizes: expected positive, non-increasing values starting at the "
                "batch size ",
                steps.batch, " (the rows of h0), got ", count[t], " at step ", t);
    TORCH_CHECK(t > 0 || count[0] == steps.batch, "lstm1997: batch_sizes: expected batch_sizes[0] ",
                "== ", steps.batch, " (the rows of h0), got ", count[0]);
    steps.offset[t] = row;
    steps.count[t] = count[t];
    steps.dense = steps.dense && count[t] == steps.batch;
    row += count[t];
  }
  TORCH_CHECK(row == sizes.rows.expect_int(), "lstm1997: batch_sizes: expected values summing to ",
              sizes.rows.expect_int(), " (the rows of input), got ", row);
  return steps;
}

std::vector<int64_t> last_step_rows(const StepRows& steps) {
  std::vector<int64_t> rows(steps.batch);
  for (int64_t t = 0; t < steps.steps(); ++t) {
    for (int64_t b = steps.active_after(t); b < steps.count[t]; ++b) {
      rows[b] = steps.offset[t] + b;
    }
  }
  return rows;
}

std::vector<int64_t> sequence_lengths(const StepRows& steps) {
  std::vector<int64_t> lengths(steps.batch, 0);
  for (int64_t t = 0; t < steps.steps(); ++t) {
    for (int64_t b = steps.active_after(t); b < steps.count[t]; ++b) {
      lengths[b] = t + 1;
    }
  }
  return lengths;
}

std::vector<int64_t> previous_step_rows(const StepRows& steps) {
  std::vector<int64_t> rows;
  for (int64_t t = 1; t < steps.steps(); ++t) {
    for (int64_t b = 0; b < steps.count[t]; ++b) {
      rows.push_back(steps.offset[t - 1] + b);
    }
  }
  return rows;
}

std::vector<int64_t> padded_rows(const StepRows& steps) {
  std::vector<int64_t> rows;
  for (int64_t t = 0; t < steps.steps(); ++t) {
    for (int64_t b = 0; b < steps.count[t]; ++b) {
      rows.push_back(t * steps.batch + b);
    }
  }
  return rows;
}

}  // namespace lstm1997
