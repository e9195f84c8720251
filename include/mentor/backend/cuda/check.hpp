#pragma once
// Error checking for every CUDA runtime, cuBLAS(Lt) and cuDNN call in the backend. A failing call
// throws mentor::Error naming the call as written, the library's status code and its description,
// and where it happened, e.g.
//   "CUDA error: cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream()) failed:
//    cudaErrorIllegalAddress (an illegal memory access was encountered) at src/cuda/runtime.cu:212"
//
// CUDA-only header: included by the .cu files of the mentor_cuda library (and CUDA-aware code),
// never by headers a CPU-only build sees. MENTOR_CUDNN_CHECK expands to cuDNN names, so only files
// that include <cudnn.h> use it.
#include <cuda_runtime.h>

#include <string>

#include "mentor/core/error.hpp"

namespace mentor::cuda::detail {

[[noreturn]] inline void throw_library_error(const char* library, const char* call, int code,
                                             const char* code_name, const char* description,
                                             const char* file, int line) {
  throw Error(mentor::detail::concat(library, " error: ", call, " failed: ", code_name, " (code ",
                                     code, ", ", description, ") at ", file, ":", line));
}

inline void check_cuda(cudaError_t status, const char* call, const char* file, int line) {
  if (status != cudaSuccess) [[unlikely]] {
    // Clears the sticky-free error state so later calls report their own failures.
    (void)cudaGetLastError();
    throw_library_error("CUDA", call, static_cast<int>(status), cudaGetErrorName(status),
                        cudaGetErrorString(status), file, line);
  }
}

// MENTOR_CUDA_SYNC_DEBUG=1 in the environment makes every launch check synchronise its stream, so
// an asynchronous fault is reported at the kernel that caused it (compute-sanitizer runs,
// debugging).
bool sync_after_launch();

void check_launch(const char* kernel, const char* file, int line);

}  // namespace mentor::cuda::detail

#define MENTOR_CUDA_CHECK(call) \
  ::mentor::cuda::detail::check_cuda((call), #call, __FILE__, __LINE__)

// After every kernel launch: reports a bad launch configuration (and, in sync-debug mode, any
// fault of the kernel itself) naming the kernel.
#define MENTOR_CUDA_CHECK_LAUNCH(kernel_name) \
  ::mentor::cuda::detail::check_launch(kernel_name, __FILE__, __LINE__)

#define MENTOR_CUBLAS_CHECK(call)                                                                 \
  do {                                                                                            \
    cublasStatus_t mentor_status_ = (call);                                                       \
    if (mentor_status_ != CUBLAS_STATUS_SUCCESS) [[unlikely]]                                     \
      ::mentor::cuda::detail::throw_library_error(                                                \
          "cuBLAS", #call, static_cast<int>(mentor_status_), cublasGetStatusName(mentor_status_), \
          cublasGetStatusString(mentor_status_), __FILE__, __LINE__);                             \
  } while (0)

#define MENTOR_CUDNN_CHECK(call)                                                                 \
  do {                                                                                           \
    cudnnStatus_t mentor_status_ = (call);                                                       \
    if (mentor_status_ != CUDNN_STATUS_SUCCESS) [[unlikely]] {                                   \
      char mentor_detail_[512] = {0};                                                            \
      cudnnGetLastErrorString(mentor_detail_, sizeof(mentor_detail_));                           \
      ::mentor::cuda::detail::throw_library_error(                                               \
          "cuDNN", #call, static_cast<int>(mentor_status_), cudnnGetErrorString(mentor_status_), \
          mentor_detail_, __FILE__, __LINE__);                                                   \
    }                                                                                            \
  } while (0)
