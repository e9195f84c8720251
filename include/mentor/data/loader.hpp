#pragma once
// Datasets and a deterministic, resumable, multi-threaded data loader.
//
// Determinism contract: the sequence of batches a DataLoader yields is a pure function of
// (dataset size, LoaderOptions minus num_workers/prefetch, start state). Worker threads only change
// *when* a batch is built, never *which* batch comes next, so 0, 1 or 16 workers give the same
// stream, and a run resumed from `state()` continues with exactly the batch it would have seen.
//
// Order of one epoch, for rank r of W:
//   1. global order: 0..N-1, or, when shuffling, a Fisher-Yates permutation drawn from
//      SplitMix64 seeded with shuffle_seed(seed, epoch) (algorithm below, in full, so that another
//      language can reproduce it; it does not use std::shuffle or std:: distributions, whose
//      results differ between standard libraries);
//   2. shard: the global order is made a multiple of W, by repeating its first elements
//      (pad_shards_by_wrapping, as torch's DistributedSampler) or by dropping its tail, and rank r
//      takes positions r, r+W, r+2W, ... so every rank has the same number of samples (collective
//      ops in distributed training need equal step counts);
//   3. batches: consecutive runs of batch_size samples of the shard; a last, shorter batch is kept
//      unless drop_last.
//
// SplitMix64 (Steele, Lea, Flood 2014):  state += 0x9E3779B97F4A7C15;
//   z = state; z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
//   return z ^ (z >> 31).
// shuffle_seed(seed, epoch) = first output of SplitMix64 started at state seed ^ (epoch *
//   0xD1B54A32D192ED03) (mod 2^64).
// Fisher-Yates: for i = N-1 down to 1: j = bounded(i + 1); swap(order[i], order[j]), where
//   bounded(n) draws x = next() until x < 2^64 - (2^64 mod n) and returns x mod n (unbiased).
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "mentor/core/error.hpp"
#include "mentor/io/json_config.hpp"

namespace mentor::data {

// ---- Datasets -----------------------------------------------------------------------------------

// A random-access collection. get() must be deterministic in its index and safe to call from
// several threads at once (loader workers call it concurrently); randomness, e.g. augmentation,
// should be derived from the index (see sample_seed) so that the stream stays reproducible.
template <class Sample>
class Dataset {
 public:
  using sample_type = Sample;
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual Sample get(int64_t index) const = 0;
};

// A dataset from a size and a function index -> sample.
template <class Sample>
class FunctionDataset final : public Dataset<Sample> {
 public:
  FunctionDataset(int64_t size, std::function<Sample(int64_t)> get_sample)
      : size_(size), get_sample_(std::move(get_sample)) {
    MENTOR_CHECK(size >= 0, "FunctionDataset: negative size ", size);
    MENTOR_CHECK(static_cast<bool>(get_sample_), "FunctionDataset: empty function");
  }
  int64_t size() const override { return size_; }
  Sample get(int64_t index) const override { return get_sample_(index); }

 private:
  int64_t size_;
  std::function<Sample(int64_t)> get_sample_;
};

// ---- Deterministic randomness
// -----------------------------------------------------------------------

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t state) : state_(state) {}
  uint64_t next() {
    state_ += 0x9E3779B97F4A7C15ull;
    uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n), n >= 1, by rejection (no modulo bias).
  uint64_t bounded(uint64_t n) {
    // 2^64 mod n, computed without 128-bit arithmetic: (2^64 - n) mod n.
    const uint64_t rejected = (0 - n) % n;
    const uint64_t limit = 0 - rejected;  // 2^64 - rejected; 0 means "accept everything"
    while (true) {
      const uint64_t x = next();
      if (limit == 0 || x < limit) return x % n;
    }
  }

 private:
  uint64_t state_;
};

inline uint64_t shuffle_seed(uint64_t seed, int64_t epoch) {
  return SplitMix64(seed ^ (static_cast<uint64_t>(epoch) * 0xD1B54A32D192ED03ull)).next();
}

// A seed for per-sample randomness (augmentation) that depends only on (seed, epoch, index).
inline uint64_t sample_seed(uint64_t seed, int64_t epoch, int64_t index) {
  return SplitMix64(shuffle_seed(seed, epoch) ^
                    (static_cast<uint64_t>(index) * 0x9E3779B97F4A7C15ull))
      .next();
}

// The permutation of 0..n-1 described at the top of this file.
inline std::vector<int64_t> shuffled_order(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
  SplitMix64 rng(shuffle_seed(seed, epoch));
  for (int64_t i = n - 1; i >= 1; --i) {
    const auto j = static_cast<int64_t>(rng.bounded(static_cast<uint64_t>(i + 1)));
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(j)]);
  }
  return order;
}

// ---- Loader
// ---------------------------------------------------------------------------------------

struct LoaderOptions {
  int64_t batch_size = 1;
  bool drop_last = false;  // drop the last batch of an epoch when it is shorter than batch_size
  bool shuffle = true;
  uint64_t seed = 0;
  int rank = 0;
  int world_size = 1;
  // Make the global order a multiple of world_size by repeating its head (true) or by dropping its
  // tail (false). Irrelevant when world_size divides the dataset size.
  bool pad_shards_by_wrapping = true;
  int num_workers = 0;       // 0: batches are built in the consumer's thread, on demand
  int prefetch_batches = 0;  // batches built or being built ahead; 0 means 2 * num_workers
};

// Position of the next batch next() returns: batch `batch_index` of epoch `epoch`.
struct LoaderState {
  int64_t epoch = 0;
  int64_t batch_index = 0;
  friend bool operator==(const LoaderState&, const LoaderState&) = default;
};

inline void to_json(nlohmann::json& j, const LoaderState& s) {
  j = nlohmann::json{{"epoch", s.epoch}, {"batch_index", s.batch_index}};
}
// nlohmann's hook (j.get<LoaderState>()): both keys required, non-negative; others are errors.
inline void from_json(const nlohmann::json& j, LoaderState& s) {
  io::JsonConfigReader r(j, "LoaderState");
  LoaderState out;
  if (!r.read("epoch", out.epoch) || !r.read("batch_index", out.batch_index))
    r.fail("needs \"epoch\" and \"batch_index\"");
  r.finish();
  MENTOR_CHECK(out.epoch >= 0 && out.batch_index >= 0, "LoaderState: epoch ", out.epoch,
               " and batch_index ", out.batch_index, " must be non-negative");
  s = out;
}

// Indices of every batch of an epoch for one rank: the pure part of the loader, kept separate so it
// can be checked (and reused, e.g. by a sampler-only caller) without threads.
class BatchPlan {
 public:
  BatchPlan(int64_t dataset_size, const LoaderOptions& options)
      : dataset_size_(dataset_size), options_(options) {
    MENTOR_CHECK(dataset_size >= 0, "DataLoader: negative dataset size ", dataset_size);
    MENTOR_CHECK(options.batch_size >= 1, "DataLoader: batch_size must be >= 1, got ",
                 options.batch_size);
    MENTOR_CHECK(options.world_size >= 1, "DataLoader: world_size must be >= 1, got ",
                 options.world_size);
    MENTOR_CHECK(options.rank >= 0 && options.rank < options.world_size, "DataLoader: rank ",
                 options.rank, " outside [0, world_size=", options.world_size, ")");
    MENTOR_CHECK(options.num_workers >= 0, "DataLoader: negative num_workers ",
                 options.num_workers);
    MENTOR_CHECK(options.prefetch_batches >= 0, "DataLoader: negative prefetch_batches ",
                 options.prefetch_batches);
    const int64_t world = options.world_size;
    if (dataset_size == 0) {
      shard_size_ = 0;
    } else if (options.pad_shards_by_wrapping) {
      shard_size_ = (dataset_size + world - 1) / world;
    } else {
      shard_size_ = dataset_size / world;
    }
    batches_per_epoch_ = options.drop_last
                             ? shard_size_ / options.batch_size
                             : (shard_size_ + options.batch_size - 1) / options.batch_size;
  }

  int64_t shard_size() const { return shard_size_; }
  int64_t batches_per_epoch() const { return batches_per_epoch_; }

  // This rank's sample indices for the whole epoch, in order.
  std::vector<int64_t> shard_order(int64_t epoch) const {
    std::vector<int64_t> global;
    if (options_.shuffle) {
      global = shuffled_order(dataset_size_, options_.seed, epoch);
    } else {
      global.resize(static_cast<size_t>(dataset_size_));
      for (int64_t i = 0; i < dataset_size_; ++i) global[static_cast<size_t>(i)] = i;
    }
    std::vector<int64_t> shard(static_cast<size_t>(shard_size_));
    const int64_t world = options_.world_size;
    for (int64_t k = 0; k < shard_size_; ++k) {
      // Position in the padded global order; positions past the end wrap to its head.
      const int64_t position = options_.rank + k * world;
      shard[static_cast<size_t>(k)] = global[static_cast<size_t>(position % dataset_size_)];
    }
    return shard;
  }

  // Indices of batch `batch_index` given this epoch's shard order.
  std::vector<int64_t> batch_indices(const std::vector<int64_t>& shard, int64_t batch_index) const {
    const int64_t begin = batch_index * options_.batch_size;
    const int64_t end = std::min(begin + options_.batch_size, shard_size_);
    return {shard.begin() + begin, shard.begin() + end};
  }

 private:
  int64_t dataset_size_;
  LoaderOptions options_;
  int64_t shard_size_ = 0;
  int64_t batches_per_epoch_ = 0;
};

// Yields batches forever, epoch after epoch (state() tells where it is; batches_per_epoch() how
// long an epoch is). With num_workers > 0, worker threads build up to prefetch_batches batches
// ahead; the consumer still receives them strictly in plan order. An exception thrown while
// building a batch (by the dataset or collate) is rethrown by the next() call that would have
// returned that batch; that batch then counts as consumed, so a caller that catches it may continue
// with the following one. The destructor stops the workers (after each finishes the batch it is
// building). The collate function, like Dataset::get, is called from several worker threads at
// once.
template <class Sample, class Batch = std::vector<Sample>>
class DataLoader {
 public:
  using Collate = std::function<Batch(std::vector<Sample>&&)>;

  DataLoader(std::shared_ptr<const Dataset<Sample>> dataset, LoaderOptions options, Collate collate,
             LoaderState start = {})
      : dataset_(std::move(dataset)),
        options_(options),
        collate_(std::move(collate)),
        plan_(dataset_ ? dataset_->size() : 0, options) {
    MENTOR_CHECK(dataset_ != nullptr, "DataLoader: null dataset");
    MENTOR_CHECK(static_cast<bool>(collate_), "DataLoader: empty collate function");
    MENTOR_CHECK(start.epoch >= 0 && start.batch_index >= 0, "DataLoader: invalid start state {",
                 start.epoch, ", ", start.batch_index, "}");
    MENTOR_CHECK(plan_.batches_per_epoch() > 0,
                 "DataLoader: an epoch has no batches (dataset size ", dataset_->size(),
                 ", world_size ", options.world_size, ", batch_size ", options.batch_size,
                 ", drop_last ", options.drop_last, ")");
    MENTOR_CHECK(start.batch_index <= plan_.batches_per_epoch(), "DataLoader: start batch_index ",
                 start.batch_index, " past the end of an epoch of ", plan_.batches_per_epoch(),
                 " batches");
    next_to_consume_ = start.epoch * plan_.batches_per_epoch() + start.batch_index;
    next_to_produce_ = next_to_consume_;
    capacity_ = options.prefetch_batches > 0 ? options.prefetch_batches : 2 * options.num_workers;
    workers_.reserve(static_cast<size_t>(options.num_workers));
    for (int w = 0; w < options.num_workers; ++w) workers_.emplace_back([this] { worker_loop(); });
  }

  // For Batch == std::vector<Sample>: the batch is the samples themselves.
  DataLoader(std::shared_ptr<const Dataset<Sample>> dataset, LoaderOptions options,
             LoaderState start = {}) requires std::is_same_v<Batch, std::vector<Sample>>
      : DataLoader(
            std::move(dataset), options,
            [](std::vector<Sample>&& samples) { return std::move(samples); }, start) {}

  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  ~DataLoader() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    work_available_.notify_all();
    for (auto& worker : workers_) worker.join();
  }

  Batch next() {
    if (workers_.empty()) {
      const int64_t linear = next_to_consume_++;
      return build_batch(linear);
    }
    std::unique_lock lock(mutex_);
    batch_ready_.wait(lock, [&] { return finished_.count(next_to_consume_) != 0; });
    auto node = finished_.extract(next_to_consume_);
    ++next_to_consume_;
    lock.unlock();
    work_available_.notify_all();  // a prefetch slot is free
    if (auto* error = std::get_if<std::exception_ptr>(&node.mapped()))
      std::rethrow_exception(*error);
    return std::move(std::get<Batch>(node.mapped()));
  }

  LoaderState state() const {
    std::lock_guard lock(mutex_);
    const int64_t per_epoch = plan_.batches_per_epoch();
    return {next_to_consume_ / per_epoch, next_to_consume_ % per_epoch};
  }

  int64_t batches_per_epoch() const { return plan_.batches_per_epoch(); }
  int64_t samples_per_epoch() const { return plan_.shard_size(); }
  const LoaderOptions& options() const { return options_; }

 private:
  using Result = std::variant<Batch, std::exception_ptr>;

  // The shard order of an epoch, computed once and shared by the workers; old epochs are evicted.
  std::shared_ptr<const std::vector<int64_t>> epoch_order(int64_t epoch) {
    std::lock_guard lock(order_mutex_);
    auto found = orders_.find(epoch);
    if (found != orders_.end()) return found->second;
    auto order = std::make_shared<const std::vector<int64_t>>(plan_.shard_order(epoch));
    orders_.emplace(epoch, order);
    // Batches are requested in nearly increasing order; epochs two behind are done with.
    while (orders_.size() > 2 && orders_.begin()->first < epoch) orders_.erase(orders_.begin());
    return order;
  }

  Batch build_batch(int64_t linear) {
    const int64_t per_epoch = plan_.batches_per_epoch();
    const auto order = epoch_order(linear / per_epoch);
    const std::vector<int64_t> indices = plan_.batch_indices(*order, linear % per_epoch);
    std::vector<Sample> samples;
    samples.reserve(indices.size());
    for (int64_t index : indices) samples.push_back(dataset_->get(index));
    return collate_(std::move(samples));
  }

  void worker_loop() {
    while (true) {
      int64_t linear = 0;
      {
        std::unique_lock lock(mutex_);
        work_available_.wait(
            lock, [&] { return stopping_ || next_to_produce_ < next_to_consume_ + capacity_; });
        if (stopping_) return;
        linear = next_to_produce_++;
      }
      Result result;
      try {
        result.template emplace<Batch>(build_batch(linear));
      } catch (...) {
        result.template emplace<std::exception_ptr>(std::current_exception());
      }
      {
        std::lock_guard lock(mutex_);
        finished_.emplace(linear, std::move(result));
      }
      batch_ready_.notify_all();
    }
  }

  std::shared_ptr<const Dataset<Sample>> dataset_;
  LoaderOptions options_;
  Collate collate_;
  BatchPlan plan_;
  int64_t capacity_ = 0;

  mutable std::mutex mutex_;
  std::condition_variable work_available_;
  std::condition_variable batch_ready_;
  int64_t next_to_consume_ = 0;  // linear index (epoch * batches_per_epoch + batch) of next()
  int64_t next_to_produce_ = 0;  // next linear index a worker will claim
  bool stopping_ = false;
  std::map<int64_t, Result> finished_;

  std::mutex order_mutex_;
  std::map<int64_t, std::shared_ptr<const std::vector<int64_t>>> orders_;

  std::vector<std::thread> workers_;  // last: started after every other member exists
};

// ---- Padding variable-length sequences
// -----------------------------------------------------------

enum class PadSide { left, right };

// rows x cols, row-major. mask is 1 where ids holds a real token, 0 where it holds padding.
template <class Id = int32_t>
struct PaddedBatch {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<Id> ids;
  std::vector<uint8_t> mask;
};

// Pads every sequence to `length` (or, when length < 0, to the longest one) with pad_value on the
// given side. Left padding puts the real tokens at the end of the row (as MENTOR's decoder prefix
// does); right padding at the start (as the T5 tokenizer does). A sequence longer than `length` is
// an error: truncation is the tokenizer's decision, not the collate's.
template <class Id>
PaddedBatch<Id> pad_batch(const std::vector<std::vector<Id>>& sequences, Id pad_value, PadSide side,
                          int64_t length = -1) {
  int64_t longest = 0;
  for (const auto& sequence : sequences) longest = std::max<int64_t>(longest, sequence.size());
  PaddedBatch<Id> out;
  out.rows = static_cast<int64_t>(sequences.size());
  out.cols = length >= 0 ? length : longest;
  out.ids.assign(static_cast<size_t>(out.rows * out.cols), pad_value);
  out.mask.assign(static_cast<size_t>(out.rows * out.cols), 0);
  for (int64_t row = 0; row < out.rows; ++row) {
    const auto& sequence = sequences[static_cast<size_t>(row)];
    const auto n = static_cast<int64_t>(sequence.size());
    MENTOR_CHECK(n <= out.cols, "pad_batch: sequence ", row, " has ", n,
                 " tokens, more than the padded length ", out.cols);
    const int64_t offset = side == PadSide::left ? out.cols - n : 0;
    for (int64_t k = 0; k < n; ++k) {
      const auto at = static_cast<size_t>(row * out.cols + offset + k);
      out.ids[at] = sequence[static_cast<size_t>(k)];
      out.mask[at] = 1;
    }
  }
  return out;
}

}  // namespace mentor::data
