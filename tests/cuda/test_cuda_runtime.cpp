// The CUDA device runtime: caching allocator (reuse, statistics, out-of-memory message), host and
// device copies of every element type, fill, strided copies and broadcast reductions, element
// conversion, Philox fills (the same streams as the CPU), streams, events, graph capture/replay and
// the error-checking macros. Every device test is skipped with a warning when no GPU is present.
// GCC 12 at -O3 reports a false -Wmaybe-uninitialized inside Shape::numel() once Shape
// temporaries are inlined into these test bodies (Shape zero-initialises its storage).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "catch.hpp"
#include "mentor/backend/cuda/allocator.hpp"
#include "mentor/backend/cuda/check.hpp"
#include "mentor/backend/cuda/graph.hpp"
#include "mentor/backend/cuda/stream.hpp"
#include "mentor/core/cuda_api.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/ops/elementwise.hpp"
#include "mentor/ops/embedding.hpp"
#include "op_harness.hpp"
#include "require_gpu.hpp"

namespace test_cuda_runtime {

using namespace mentor;

namespace {

template <class T>
std::vector<T> sample_values(size_t n) {
  std::vector<T> values(n);
  for (size_t i = 0; i < n; ++i) {
    if constexpr (std::is_same_v<T, bool>) {
      values[i] = (i * 7 + 3) % 5 < 2;
    } else if constexpr (std::is_same_v<T, bf16>) {
      values[i] = bf16(static_cast<float>(static_cast<int>(i % 37) - 18) * 0.375f);
    } else if constexpr (std::is_same_v<T, uint8_t>) {
      values[i] = static_cast<uint8_t>((i * 13) % 251);
    } else {
      values[i] = static_cast<T>((static_cast<int64_t>(i * 7919) % 1001) - 500) /
                  static_cast<T>(std::is_floating_point_v<T> ? 8 : 1);
    }
  }
  return values;
}

// A host tensor holding `values` (element by element: sidesteps a GCC 12 -Wmaybe-uninitialized
// false positive that from_vector's inlined Shape temporary triggers in this file).
template <class T>
Tensor<T> host_tensor(const std::vector<T>& values, const Shape& shape) {
  Tensor<T> out = Tensor<T>::empty(shape);
  T* data = out.data();
  for (size_t i = 0; i < values.size(); ++i) data[i] = values[i];
  return out;
}

template <class T>
void check_round_trip() {
  const std::vector<T> values = sample_values<T>(1031);
  const Shape shape{static_cast<int64_t>(values.size())};
  Tensor<T> host = host_tensor(values, shape);
  Tensor<T, CUDA> device = host.template to<CUDA>();
  std::vector<T> back = device.template to<CPU>().to_vector();
  REQUIRE(back.size() == values.size());
  bool equal = true;
  for (size_t i = 0; i < values.size(); ++i) {
    if constexpr (std::is_same_v<T, bf16>) {
      equal = equal && back[i].bits == values[i].bits;
    } else {
      equal = equal && back[i] == values[i];
    }
  }
  INFO("element type " << dtype_name<T>());
  CHECK(equal);
}

template <class T>
void check_fill(T value) {
  Tensor<T, CUDA> t = Tensor<T, CUDA>::full(Shape{3, 1001}, value);
  std::vector<T> back = t.to_vector();
  bool equal = true;
  for (const T& v : back) {
    if constexpr (std::is_same_v<T, bf16>) {
      equal = equal && v.bits == value.bits;
    } else {
      equal = equal && v == value;
    }
  }
  INFO("element type " << dtype_name<T>());
  CHECK(equal);
}

// Permuted, sliced and expanded views made contiguous on both devices: identical elements.
template <class T>
void check_contiguous_views() {
  const std::vector<T> values = sample_values<T>(2 * 3 * 5 * 7);
  const Shape shape{2, 3, 5, 7};
  Tensor<T> host = host_tensor(values, shape);
  Tensor<T, CUDA> device = host.template to<CUDA>();
  auto views = [](const auto& x) {
    using X = std::decay_t<decltype(x)>;
    return std::vector<X>{x.permute({3, 1, 0, 2}),
                          x.transpose(1, 3),
                          x.slice(3, 1, 7, 2),
                          x.narrow(2, 1, 3).transpose(0, 2),
                          x.select(1, 2),
                          x.slice(1, 1, 2).expand(Shape{2, 4, 5, 7}),
                          x.unsqueeze(0).expand(Shape{3, 2, 3, 5, 7})};
  };
  auto host_views = views(host);
  auto device_views = views(device);
  for (size_t v = 0; v < host_views.size(); ++v) {
    std::vector<T> expected = host_views[v].contiguous().to_vector();
    std::vector<T> got = device_views[v].contiguous().template to<CPU>().to_vector();
    REQUIRE(expected.size() == got.size());
    bool equal = true;
    for (size_t i = 0; i < got.size(); ++i) {
      if constexpr (std::is_same_v<T, bf16>) {
        equal = equal && got[i].bits == expected[i].bits;
      } else {
        equal = equal && got[i] == expected[i];
      }
    }
    INFO("element type " << dtype_name<T>() << ", view " << v);
    CHECK(equal);
  }
}

// sum_to (the broadcast reduction behind every broadcasting gradient) on both devices.
template <class T>
void check_sum_to(const Shape& big, const Shape& small, double tolerance) {
  Generator gen(11);
  Tensor<T> host = Tensor<float>::rand(big, gen, -2.f, 2.f).template to<T>();
  // Reference in double: the CPU's bf16 sum_to accumulates in bf16 (a long bf16 sum stagnates),
  // while the device accumulates in float.
  Tensor<double> expected = sum_to(host.template to<double>(), small);
  Tensor<T> got = sum_to(host.template to<CUDA>(), small).template to<CPU>();
  INFO("element type " << dtype_name<T>() << ": " << big.str() << " -> " << small.str());
  CHECK(test::rel_error(got, expected) <= tolerance);
  // Deterministic: the same bits on every run (float atomics in the split reductions would not).
  for (int run = 0; run < 3; ++run) {
    Tensor<T> again = sum_to(host.template to<CUDA>(), small).template to<CPU>();
    CHECK(std::memcmp(again.data(), got.data(), sizeof(T) * static_cast<size_t>(got.numel())) == 0);
  }
}

}  // namespace

TEST_CASE("cuda: check macros name the call and the error", "[cuda][runtime]") {
  // Runs with or without a GPU: either way cudaSetDevice(9999) fails.
  try {
    MENTOR_CUDA_CHECK(cudaSetDevice(9999));
    FAIL("cudaSetDevice(9999) did not fail");
  } catch (const Error& e) {
    std::string message = e.what();
    CHECK(message.find("cudaSetDevice(9999)") != std::string::npos);
    CHECK(message.find("CUDA error") != std::string::npos);
    CHECK(message.find("cudaError") != std::string::npos);
  }
}

TEST_CASE("cuda: host/device round trips of every element type", "[cuda][runtime]") {
  MENTOR_REQUIRE_GPU();
  check_round_trip<float>();
  check_round_trip<double>();
  check_round_trip<bf16>();
  check_round_trip<int32_t>();
  check_round_trip<int64_t>();
  check_round_trip<uint8_t>();
  check_round_trip<bool>();
}

TEST_CASE("cuda: fill of every element type", "[cuda][runtime]") {
  MENTOR_REQUIRE_GPU();
  check_fill<float>(1.5f);
  check_fill<float>(0.f);
  check_fill<double>(-2.25);
  check_fill<bf16>(bf16(3.0f));
  check_fill<int32_t>(-7);
  check_fill<int64_t>(int64_t{1} << 40);
  check_fill<uint8_t>(200);
  check_fill<bool>(true);
  check_fill<bool>(false);
}

TEST_CASE("cuda: strided copies of views equal the CPU's", "[cuda][runtime]") {
  MENTOR_REQUIRE_GPU();
  check_contiguous_views<float>();
  check_contiguous_views<double>();
  check_contiguous_views<bf16>();
  check_contiguous_views<int64_t>();
  check_contiguous_views<uint8_t>();
  check_contiguous_views<bool>();
}

TEST_CASE("cuda: copy_ and add_ into views", "[cuda][runtime]") {
  MENTOR_REQUIRE_GPU();
  Generator gen(5);
  Tensor<float> a = Tensor<float>::rand(Shape{6, 9}, gen);
  Tensor<float> b = Tensor<float>::rand(Shape{9}, gen);
  Tensor<float> host = a.clone();
  host.transpose(0, 1).slice(0, 2, 9, 3).copy_(Tensor<float>::full(Shape{6}, 4.f));
  host.add_(b);
  Tensor<float, CUDA> device = a.to<CUDA>();
  device.transpose(0, 1).slice(0, 2, 9, 3).copy_(Tensor<float, CUDA>::full(Shape{6}, 4.f));
  device.add_(b.to<CUDA>());
  CHECK(test::rel_error(device.to<CPU>(), host) == 0.0);
}

TEST_CASE("cuda: broadcast reductions (sum_to) match the CPU", "[cuda][runtime]") {
  MENTOR_REQUIRE_GPU();
  const std::vector<std::pair<Shape, Shape>> cases = {
      {Shape{37, 129}, Shape{129}},         // bias gradient: rows reduced
      {Shape{37, 129}, Shape{37, 1}},       // innermost reduced
      {Shape{5, 7, 11}, Shape{1, 7, 1}},    // outer and inner reduced
      {Shape{4, 3, 5, 6}, Shape{3, 1, 6}},  // leading dimension dropped
      {Shape{100003}, Shape{1}},            // everything into one value (split reduction)
      {Shape{3, 70000}, Shape{3, 1}},       // few long rows (split reduction)
      {Shape{70000, 3}, Shape{3}},          // few long columns (split reduction)
  };
  for (const auto& [big, small] : cases) {
    check_sum_to<float>(big, small, 1e-5);
    check_sum_to<double>(big, small, 1e-12);
    check_sum_to<bf16>(big, small, 1e-2);
  }
  // Integer reductions are exact.
  const Shape int_shape{6, 35};
  Tensor<int64_t> ints = host_tensor(sample_values<int64_t>(6 * 35), int_shape);
  Tensor<int64_t> expected = sum_to(ints, Shape{35});
  Tensor<int64_t> got = sum_to(ints.to<CUDA>(), Shape{35}).to<CPU>();
  CHECK(got.to_vector() == expected.to_vector());
}

TEST_CASE("cuda: element conversions match the CPU", "[cuda][runtime]") {
  MENTOR_REQUIRE_GPU();
  Generator gen(3);
  Tensor<float> f = Tensor<float>::rand(Shape{1000}, gen, -300.f, 300.f);
  auto same = [](const auto& got, const auto& expected) {
    CHECK(got.template to<CPU>().to_vector() == expected.to_vector());
  };
  same(f.to<CUDA>().to<bf16>().to<float>(), f.to<bf16>().to<float>());
  same(f.to<CUDA>().to<double>(), f.to<double>());
  same(f.to<CUDA>().to<int32_t>(), f.to<int32_t>());
  same(f.to<CUDA>().to<int64_t>().to<float>(), f.to<int64_t>().to<float>());
  same(f.to<CUDA>().to<bool>(), f.to<bool>());
  Tensor<int64_t> ids = Tensor<int64_t>::arange(300);
  same(ids.to<CUDA>().to<uint8_t>(), ids.to<uint8_t>());
  same(ids.to<CUDA>().to<bf16>().to<float>(), ids.to<bf16>().to<float>());
}

TEST_CASE("cuda: Philox fills give the CPU's streams", "[cuda][runtime]") {
  MENTOR_REQUIRE_GPU();
  for (int64_t n : {1, 3, 4, 1001}) {
    Generator cpu_gen(1234), gpu_gen(1234);
    cpu_gen.offset = gpu_gen.offset = 17;
    Tensor<float> u_cpu = Tensor<float>::rand(Shape{n}, cpu_gen, -3.f, 5.f);
    Tensor<float> u_gpu = Tensor<float, CUDA>::rand(Shape{n}, gpu_gen, -3.f, 5.f).to<CPU>();
    CHECK(test::rel_error(u_gpu, u_cpu) <= 1e-7);
    Tensor<float> z_cpu = Tensor<float>::randn(Shape{n}, cpu_gen, 1.f, 2.f);
    Tensor<float> z_gpu = Tensor<float, CUDA>::randn(Shape{n}, gpu_gen, 1.f, 2.f).to<CPU>();
    // Device logf/sinf/cosf may differ from glibc's by an ulp or two.
    CHECK(test::rel_error(z_gpu, z_cpu) <= 1e-6);
    CHECK(cpu_gen.offset == gpu_gen.offset);
    Tensor<bf16> b_cpu = Tensor<bf16>::randn(Shape{n}, cpu_gen);
    Tensor<bf16> b_gpu = Tensor<bf16, CUDA>::randn(Shape{n}, gpu_gen).to<CPU>();
    CHECK(test::rel_error(b_gpu, b_cpu) <= 1e-2);
  }
}

TEST_CASE("cuda: the caching allocator reuses blocks and reports usage", "[cuda][runtime]") {
  MENTOR_REQUIRE_GPU();
  cuda::synchronize();
  cuda::empty_cache();
  const cuda::AllocatorStats before = cuda::allocator_stats();
  const size_t bytes = 3 * 1000 * 1000 * sizeof(float);
  const size_t size_class = cuda::allocation_size_class(bytes);
  CHECK(size_class >= bytes);
  CHECK(size_class <= bytes + bytes / 8);
  {
    Tensor<float, CUDA> t = Tensor<float, CUDA>::empty(Shape{3, 1000, 1000});
    const cuda::AllocatorStats during = cuda::allocator_stats();
    CHECK(during.allocated_bytes == before.allocated_bytes + size_class);
    CHECK(during.device_mallocs == before.device_mallocs + 1);
    CHECK(during.peak_allocated_bytes >= during.allocated_bytes);
  }
  const cuda::AllocatorStats freed = cuda::allocator_stats();
  CHECK(freed.allocated_bytes == before.allocated_bytes);
  CHECK(freed.cached_bytes >= size_class);
  {
    Tensor<float, CUDA> again = Tensor<float, CUDA>::empty(Shape{3000, 1000});  // same class
    const cuda::AllocatorStats reuse = cuda::allocator_stats();
    CHECK(reuse.cache_hits == freed.cache_hits + 1);
    CHECK(reuse.device_mallocs == freed.device_mallocs);
  }
  cuda::empty_cache();
  const cuda::AllocatorStats emptied = cuda::allocator_stats();
  CHECK(emptied.cached_bytes == 0);
  CHECK(emptied.reserved_bytes == emptied.allocated_bytes);
  CHECK(Tensor<float, CUDA>::empty(Shape{0}).data() == nullptr);
}

TEST_CASE("cuda: out of memory is an exception giving the bytes asked for and free",
          "[cuda][runtime]") {
  MENTOR_REQUIRE_GPU();
  const int64_t elements = int64_t{1} << 40;  // 4 TiB of floats
  try {
    Tensor<float, CUDA> huge = Tensor<float, CUDA>::empty(Shape{elements});
    FAIL("allocating 4 TiB did not fail");
  } catch (const OutOfMemoryError& e) {
    const std::string message = e.what();
    INFO(message);
    CHECK(message.find(std::to_string(elements * 4)) != std::string::npos);
    CHECK(message.find("free") != std::string::npos);
  }
  // The device is still usable afterwards.
  Tensor<float, CUDA> small = Tensor<float, CUDA>::full(Shape{4}, 2.f);
  CHECK(small.to_vector() == std::vector<float>{2.f, 2.f, 2.f, 2.f});
}

TEST_CASE("cuda: streams, events and work on a side stream", "[cuda][runtime]") {
  MENTOR_REQUIRE_GPU();
  const cuda::DeviceInfo info = cuda::device_info();
  CHECK(info.multiprocessors > 0);
  CHECK(cuda::memory_info().total_bytes > 0);
  cuda::Stream side;
  cuda::Event start(true), stop(true);
  Tensor<float> host = Tensor<float>::full(Shape{1 << 20}, 1.f);
  Tensor<float, CUDA> result;
  {
    cuda::StreamGuard on(side);
    CHECK(cuda::current_stream() == side.handle());
    start.record();
    Tensor<float, CUDA> x = host.to<CUDA>();
    result = (x * 3.0 + 1.0).contiguous();
    stop.record();
  }
  CHECK(cuda::current_stream() == nullptr);
  stop.synchronize();
  CHECK(stop.query());
  CHECK(stop.elapsed_ms_since(start) >= 0.f);
  side.synchronize();
  std::vector<float> values = result.to_vector();
  CHECK(values.front() == 4.f);
  CHECK(values.back() == 4.f);
}

TEST_CASE("cuda: a captured graph replays on updated inputs", "[cuda][runtime]") {
  MENTOR_REQUIRE_GPU();
  cuda::Stream stream;
  cuda::StreamGuard on(stream);
  Tensor<float, CUDA> x = Tensor<float, CUDA>::full(Shape{1000}, 1.f);
  Tensor<float, CUDA> w = Tensor<float, CUDA>::full(Shape{1000}, 2.f);
  auto step = [&] { return (x * w + 1.0) * 0.5; };
  { Tensor<float, CUDA> warm = step(); }  // first use outside the capture
  cuda::Graph graph;
  Tensor<float, CUDA> y;
  graph.capture(stream, [&] { y = step(); });
  CHECK(graph.captured());
  CHECK(cuda::current_stream() == stream.handle());
  for (float value : {3.f, -1.f, 10.f}) {
    x.copy_(Tensor<float, CUDA>::full(Shape{1000}, value));
    graph.replay();
    std::vector<float> got = y.to_vector();  // synchronises this (the current) stream
    CHECK(got.front() == (value * 2.f + 1.f) * 0.5f);
    CHECK(got.back() == (value * 2.f + 1.f) * 0.5f);
  }
}

TEST_CASE("cuda: empty_cache keeps the cached blocks of a live graph", "[cuda][runtime]") {
  MENTOR_REQUIRE_GPU();
  cuda::Stream stream;
  cuda::StreamGuard on(stream);
  const int64_t n = 1 << 18;
  Tensor<float, CUDA> x = Tensor<float, CUDA>::full(Shape{n}, 1.f);
  auto step = [&] { return ((x * 2.0 + 1.0) * 3.0 - 1.0) * 0.5; };  // temporaries freed inside
  { Tensor<float, CUDA> warm = step(); }
  cuda::Graph graph;
  Tensor<float, CUDA> y;
  graph.capture(stream, [&] { y = step(); });
  stream.synchronize();
  // The temporaries went back to the graph's pool during capture; emptying the cache must not
  // return them to the driver, or the fillers below may receive their addresses.
  cuda::empty_cache();
  CHECK(cuda::allocator_stats().cached_bytes >= cuda::allocation_size_class(n * sizeof(float)));
  std::vector<Tensor<float, CUDA>> fillers;
  for (int i = 0; i < 4; ++i) fillers.push_back(Tensor<float, CUDA>::full(Shape{n}, 7.f));
  for (float value : {3.f, -1.f}) {
    x.copy_(Tensor<float, CUDA>::full(Shape{n}, value));
    graph.replay();
    const float expected = ((value * 2.f + 1.f) * 3.f - 1.f) * 0.5f;
    std::vector<float> got = y.to_vector();
    CHECK(got.front() == expected);
    CHECK(got.back() == expected);
    for (const Tensor<float, CUDA>& filler : fillers) {
      std::vector<float> kept = filler.to_vector();
      CHECK(kept.front() == 7.f);
      CHECK(kept.back() == 7.f);
    }
  }
}

TEST_CASE("cuda: an embedding lookup is captured into a graph and replays on new ids",
          "[cuda][runtime]") {
  MENTOR_REQUIRE_GPU();
  // The eager lookup checks its ids with a host wait; under capture it must not (a wait there
  // fails the capture), and the graph then follows ids updated in place.
  std::vector<float> values(6 * 8);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i);
  Tensor<float> table = Tensor<float>::from_vector(values, Shape{6, 8});
  Tensor<float, CUDA> table_gpu = table.to<CUDA>();
  Tensor<int64_t, CUDA> ids = Tensor<int64_t>::from_vector({0, 5, 2}, Shape{3}).to<CUDA>();
  cuda::Stream stream;
  cuda::StreamGuard on(stream);
  { Tensor<float, CUDA> warm = mentor::embedding(table_gpu, ids); }
  cuda::Graph graph;
  Tensor<float, CUDA> rows;
  graph.capture(stream, [&] { rows = mentor::embedding(table_gpu, ids); });
  for (const std::vector<int64_t>& next : {std::vector<int64_t>{3, 3, 1}, {4, 0, 5}}) {
    Tensor<int64_t> next_cpu = Tensor<int64_t>::from_vector(next, Shape{3});
    ids.copy_(next_cpu.to<CUDA>());
    graph.replay();
    CHECK(rows.to<CPU>().to_vector() == mentor::embedding(table, next_cpu).to_vector());
  }
}

}  // namespace test_cuda_runtime
