#include "buffers.h"

#include <cstdint>

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace lstm1997 {

namespace {

// Below this, buffers mostly come from (and go back to) malloc's heap, already faulted in.
constexpr size_t kHugePageAdviceMinBytes = size_t{4} << 20;

void advise_huge_pages(const at::Tensor& tensor) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const size_t bytes = tensor.nbytes();
  if (bytes < kHugePageAdviceMinBytes) {
    return;
  }
  constexpr uintptr_t kHugePage = uintptr_t{2} << 20;
  const auto begin = reinterpret_cast<uintptr_t>(tensor.data_ptr());
  // Only whole huge pages inside the tensor: the advice must not reach memory it does not own.
  const uintptr_t first = (begin + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t last = (begin + bytes) & ~(kHugePage - 1);
  if (last > first) {
    // Advice only: on failure (no THP in this kernel) the buffer keeps small pages.
    madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
  }
#else
  (void)tensor;
#endif
}

}  // namespace

at::Tensor empty_buffer(at::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor tensor = at::empty(sizes, options);
  if (tensor.device().is_cpu()) {
    advise_huge_pages(tensor);
  }
  return tensor;
}

at::Tensor contiguous_buffer(const at::Tensor& tensor) {
  if (tensor.is_contiguous()) {
    return tensor;
  }
  at::Tensor copy = empty_buffer(tensor.sizes(), tensor.options());
  copy.copy_(tensor);
  return copy;
}

}  // namespace lstm1997
