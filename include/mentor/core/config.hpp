#pragma once
// Compiler glue shared by host and device code.
#if defined(__CUDACC__)
#define MENTOR_HD __host__ __device__
#define MENTOR_INLINE __forceinline__
#else
#define MENTOR_HD
#define MENTOR_INLINE inline
#endif
