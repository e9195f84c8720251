// DataLoader: determinism across worker counts, resume, sharding, errors, padding.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "mentor/data/loader.hpp"

namespace test_loader {

using mentor::data::DataLoader;
using mentor::data::Dataset;
using mentor::data::FunctionDataset;
using mentor::data::LoaderOptions;
using mentor::data::LoaderState;
using mentor::data::PadSide;

namespace {

// Sample i is i; get() sleeps a pseudo-random, index-dependent time so workers finish out of order.
std::shared_ptr<const Dataset<int64_t>> jittery_dataset(int64_t size, bool jitter = true) {
  return std::make_shared<FunctionDataset<int64_t>>(size, [jitter](int64_t index) {
    if (jitter) std::this_thread::sleep_for(std::chrono::microseconds((index * 7919) % 13 * 150));
    return index;
  });
}

using Batches = std::vector<std::vector<int64_t>>;

Batches take(DataLoader<int64_t>& loader, int64_t count) {
  Batches batches;
  for (int64_t i = 0; i < count; ++i) batches.push_back(loader.next());
  return batches;
}

}  // namespace

// Expected values below come from an independent Python implementation of the algorithm documented
// in loader.hpp (SplitMix64 + Fisher-Yates with rejection sampling), e.g.
//   def perm(n, seed, epoch): o = list(range(n)); r = SM(shuffle_seed(seed, epoch))
//       for i in range(n - 1, 0, -1): j = r.bounded(i + 1); o[i], o[j] = o[j], o[i]
TEST_CASE("SplitMix64 matches the published reference sequence", "[loader]") {
  // The first outputs for seed 1234567 (the test vector of Vigna's reference C code).
  mentor::data::SplitMix64 rng(1234567);
  const std::vector<uint64_t> expected = {6457827717110365317ull, 3203168211198807973ull,
                                          9817491932198370423ull, 4593380528125082431ull,
                                          16408922859458223821ull};
  for (uint64_t value : expected) CHECK(rng.next() == value);
}

TEST_CASE("shuffled_order matches the documented algorithm", "[loader]") {
  CHECK(mentor::data::shuffled_order(10, 42, 0) ==
        std::vector<int64_t>{4, 6, 7, 0, 9, 5, 1, 2, 3, 8});
  CHECK(mentor::data::shuffled_order(10, 42, 1) ==
        std::vector<int64_t>{0, 8, 1, 5, 2, 3, 6, 4, 7, 9});
  CHECK(mentor::data::shuffled_order(12, 7, 3) ==
        std::vector<int64_t>{4, 5, 11, 2, 3, 0, 9, 7, 6, 1, 10, 8});
}

TEST_CASE("an epoch visits every sample once, in the documented order", "[loader]") {
  LoaderOptions options;
  options.batch_size = 3;
  options.seed = 42;
  DataLoader<int64_t> loader(jittery_dataset(10, false), options);
  REQUIRE(loader.batches_per_epoch() == 4);
  const Batches epoch0 = take(loader, 4);
  CHECK(epoch0 == Batches{{4, 6, 7}, {0, 9, 5}, {1, 2, 3}, {8}});
  CHECK(loader.state() == LoaderState{1, 0});
  const Batches epoch1 = take(loader, 4);
  CHECK(epoch1 == Batches{{0, 8, 1}, {5, 2, 3}, {6, 4, 7}, {9}});

  options.shuffle = false;
  options.drop_last = true;
  DataLoader<int64_t> sequential(jittery_dataset(10, false), options);
  REQUIRE(sequential.batches_per_epoch() == 3);
  CHECK(take(sequential, 4) == Batches{{0, 1, 2}, {3, 4, 5}, {6, 7, 8}, {0, 1, 2}});
}

TEST_CASE("the batch stream does not depend on the number of workers", "[loader]") {
  LoaderOptions options;
  options.batch_size = 4;
  options.seed = 123;
  const int64_t batches = 3 * 13;  // three epochs of ceil(50 / 4) = 13 batches
  options.num_workers = 0;
  DataLoader<int64_t> reference(jittery_dataset(50), options);
  const Batches expected = take(reference, batches);
  for (int workers : {1, 4}) {
    for (int prefetch : {0, 1, 7}) {
      options.num_workers = workers;
      options.prefetch_batches = prefetch;
      DataLoader<int64_t> loader(jittery_dataset(50), options);
      CAPTURE(workers, prefetch);
      CHECK(take(loader, batches) == expected);
    }
  }
}

TEST_CASE("a custom collate builds the batch", "[loader]") {
  LoaderOptions options;
  options.batch_size = 5;
  options.shuffle = false;
  options.num_workers = 2;
  DataLoader<int64_t, int64_t> loader(
      jittery_dataset(12), options, [](std::vector<int64_t>&& samples) {
        return std::accumulate(samples.begin(), samples.end(), int64_t{0});
      });
  CHECK(loader.next() == 0 + 1 + 2 + 3 + 4);
  CHECK(loader.next() == 5 + 6 + 7 + 8 + 9);
  CHECK(loader.next() == 10 + 11);
}

TEST_CASE("resuming from state() continues with exactly the same batches", "[loader]") {
  LoaderOptions options;
  options.batch_size = 3;
  options.seed = 9;
  options.num_workers = 3;
  DataLoader<int64_t> uninterrupted(jittery_dataset(20), options);
  const Batches all = take(uninterrupted, 25);  // 7 batches per epoch: crosses 3 epoch boundaries

  for (int64_t stop : {0, 1, 6, 7, 8, 15}) {
    CAPTURE(stop);
    LoaderState state;
    {
      DataLoader<int64_t> first(jittery_dataset(20), options);
      take(first, stop);
      state = first.state();
      CHECK(state == LoaderState{stop / 7, stop % 7});
    }  // destroyed with prefetched batches pending
    // The state survives a checkpoint as JSON.
    const nlohmann::json saved = state;
    options.num_workers = stop % 2 == 0 ? 0 : 2;
    DataLoader<int64_t> resumed(jittery_dataset(20), options, saved.get<LoaderState>());
    options.num_workers = 3;
    const Batches rest = take(resumed, 25 - stop);
    CHECK(rest == Batches(all.begin() + stop, all.end()));
  }
}

TEST_CASE("shards partition the data and every rank gets the same number of batches", "[loader]") {
  LoaderOptions options;
  options.batch_size = 2;
  options.seed = 5;
  options.world_size = 4;

  SECTION("divisible size: disjoint shards covering everything") {
    std::multiset<int64_t> seen;
    for (int rank = 0; rank < 4; ++rank) {
      options.rank = rank;
      options.num_workers = rank % 2 ? 2 : 0;
      DataLoader<int64_t> loader(jittery_dataset(20, false), options);
      REQUIRE(loader.batches_per_epoch() == 3);  // 5 samples per rank
      for (const auto& batch : take(loader, 3)) seen.insert(batch.begin(), batch.end());
    }
    CHECK(seen.size() == 20);
    for (int64_t i = 0; i < 20; ++i) CHECK(seen.count(i) == 1);
  }

  SECTION("uneven size padded by wrapping: all samples seen, the head repeated") {
    // Global order for (n=22, seed 5, epoch 0) is the shuffled_order; ranks take positions r + 4k
    // of that order extended by its first two elements.
    const std::vector<int64_t> global = mentor::data::shuffled_order(22, 5, 0);
    std::multiset<int64_t> seen;
    for (int rank = 0; rank < 4; ++rank) {
      options.rank = rank;
      DataLoader<int64_t> loader(jittery_dataset(22, false), options);
      REQUIRE(loader.samples_per_epoch() == 6);
      std::vector<int64_t> shard;
      for (const auto& batch : take(loader, 3))
        shard.insert(shard.end(), batch.begin(), batch.end());
      for (int k = 0; k < 6; ++k) CHECK(shard[k] == global[(rank + 4 * k) % 22]);
      seen.insert(shard.begin(), shard.end());
    }
    CHECK(seen.size() == 24);
    for (int64_t i = 0; i < 22; ++i) CHECK(seen.count(i) >= 1);
    CHECK(seen.count(global[0]) == 2);
    CHECK(seen.count(global[1]) == 2);
  }

  SECTION("uneven size with the tail dropped: disjoint, equal shards") {
    options.pad_shards_by_wrapping = false;
    std::set<int64_t> seen;
    for (int rank = 0; rank < 4; ++rank) {
      options.rank = rank;
      DataLoader<int64_t> loader(jittery_dataset(23, false), options);
      REQUIRE(loader.samples_per_epoch() == 5);
      for (const auto& batch : take(loader, 3))
        for (int64_t index : batch) CHECK(seen.insert(index).second);
    }
    CHECK(seen.size() == 20);
  }
}

TEST_CASE("an exception while building a batch reaches the consumer", "[loader]") {
  auto failing = std::make_shared<FunctionDataset<int64_t>>(12, [](int64_t index) -> int64_t {
    if (index == 7) throw std::runtime_error("cannot decode sample 7");
    return index;
  });
  LoaderOptions options;
  options.batch_size = 3;
  options.shuffle = false;
  for (int workers : {0, 1, 3}) {
    CAPTURE(workers);
    options.num_workers = workers;
    DataLoader<int64_t> loader(failing, options);
    CHECK(loader.next() == std::vector<int64_t>{0, 1, 2});
    CHECK(loader.next() == std::vector<int64_t>{3, 4, 5});
    CHECK_THROWS_WITH(loader.next(), "cannot decode sample 7");
    // The failed batch is consumed; the loader goes on.
    CHECK(loader.state() == LoaderState{0, 3});
    CHECK(loader.next() == std::vector<int64_t>{9, 10, 11});
    CHECK(loader.next() == std::vector<int64_t>{0, 1, 2});
  }
}

TEST_CASE("prefetching is bounded and shutdown is clean", "[loader]") {
  std::atomic<int64_t> calls{0};
  auto counting = std::make_shared<FunctionDataset<int64_t>>(1000, [&calls](int64_t index) {
    ++calls;
    return index;
  });
  LoaderOptions options;
  options.batch_size = 1;
  options.num_workers = 4;
  options.prefetch_batches = 3;
  {
    DataLoader<int64_t> loader(counting, options);
    loader.next();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    // Built or being built: at most the consumed batch plus the prefetch capacity.
    CHECK(calls.load() <= 1 + 3);
    CHECK(calls.load() >= 1);
  }  // the destructor must return although workers wait for a free slot
  { DataLoader<int64_t> unused(counting, options); }
  SUCCEED("destructors returned");
}

TEST_CASE("invalid loader settings are reported", "[loader]") {
  LoaderOptions options;
  options.batch_size = 4;
  options.drop_last = true;
  CHECK_THROWS_WITH(DataLoader<int64_t>(jittery_dataset(3, false), options),
                    Catch::Contains("an epoch has no batches"));
  options.drop_last = false;
  options.world_size = 2;
  options.rank = 2;
  CHECK_THROWS_WITH(DataLoader<int64_t>(jittery_dataset(3, false), options),
                    Catch::Contains("rank 2 outside"));
  options.rank = 0;
  CHECK_THROWS_WITH(DataLoader<int64_t>(jittery_dataset(8, false), options, LoaderState{0, 5}),
                    Catch::Contains("start batch_index 5"));
}

TEST_CASE("pad_batch pads left or right with a mask", "[loader]") {
  const std::vector<std::vector<int32_t>> sequences = {{5, 6, 7}, {8}, {}, {1, 2}};
  SECTION("right padding to the longest") {
    const auto padded = mentor::data::pad_batch(sequences, int32_t{0}, PadSide::right);
    CHECK(padded.rows == 4);
    CHECK(padded.cols == 3);
    CHECK(padded.ids == std::vector<int32_t>{5, 6, 7, 8, 0, 0, 0, 0, 0, 1, 2, 0});
    CHECK(padded.mask == std::vector<uint8_t>{1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0});
  }
  SECTION("left padding to a fixed length") {
    const auto padded = mentor::data::pad_batch(sequences, int32_t{-1}, PadSide::left, 4);
    CHECK(padded.cols == 4);
    CHECK(padded.ids ==
          std::vector<int32_t>{-1, 5, 6, 7, -1, -1, -1, 8, -1, -1, -1, -1, -1, -1, 1, 2});
    CHECK(padded.mask == std::vector<uint8_t>{0, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 1});
  }
  SECTION("a sequence longer than the length is an error naming it") {
    CHECK_THROWS_WITH(mentor::data::pad_batch(sequences, int32_t{0}, PadSide::right, 2),
                      Catch::Contains("sequence 0 has 3 tokens"));
  }
  SECTION("64-bit ids") {
    const std::vector<std::vector<int64_t>> wide = {{1LL << 40}, {2, 3}};
    const auto padded = mentor::data::pad_batch(wide, int64_t{0}, PadSide::left);
    CHECK(padded.ids == std::vector<int64_t>{0, 1LL << 40, 2, 3});
    CHECK(padded.mask == std::vector<uint8_t>{0, 1, 1, 1});
  }
}

}  // namespace test_loader
