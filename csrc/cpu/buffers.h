// Large working buffers of the CPU kernels.
#pragma once

#include <ATen/ATen.h>

namespace lstm1997 {

// at::empty, with the tensor's memory advised to the kernel for transparent huge pages when it is
// large (Linux). A long sequence's pass fills hundreds of MB of fresh buffers: glibc serves
// allocations over 32 MB with mmap and unmaps them when freed, so every call faults all of that
// memory in again, 4 KiB at a time (measured at T = 10000, B = 16, H = 128: 233,000 minor faults
// per train step, which took 105 us a step against 62 at T = 1000). With 2 MiB pages the faults
// drop about 500-fold. Where the system has huge pages off, the advice is ignored.
at::Tensor empty_buffer(at::IntArrayRef sizes, const at::TensorOptions& options);

// `tensor` itself when contiguous, else a contiguous copy in an empty_buffer.
at::Tensor contiguous_buffer(const at::Tensor& tensor);

}  // namespace lstm1997
