#pragma once
// The per-token sampling step of LlamaGen/MENTOR generation, on the host, for one row of float
// logits. It reproduces upstream sample() (autoregressive/models/generate.py):
//   logits / max(temperature, 1e-5)                     (float, as upstream)
//   -> top-k: keep every logit >= the k-th largest (ties kept), k clamped to [1, vocab], 0 = off
//   -> top-p: in descending order, drop a token when the softmax mass of the tokens before it
//      already exceeds top_p (so the first token over the threshold is kept), 1 = off
//   -> softmax -> one multinomial draw,
// with two extras: min-p after top-p (drop tokens whose probability < min_p * the largest one;
// 0 = off) and greedy (argmax of the raw logits, the first index on ties, like torch.argmax).
// The draw is counter-based: u = philox_uniform_at(seed, 0, step), so a request's token at a step
// depends only on (seed, step), not on batching or threads. A Sampler holds scratch for one row and
// allocates nothing after construction; use one per thread.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include "mentor/core/error.hpp"
#include "mentor/core/random.hpp"

namespace mentor::generate {

struct SamplingParams {
  double temperature = 1.0;  // upstream divides by max(temperature, 1e-5): 0 is near-greedy
  int64_t top_k = 0;         // 0 = off; larger than the vocabulary = off
  double top_p = 1.0;        // 1 = off
  double min_p = 0.0;        // 0 = off
  bool greedy = false;       // argmax of the raw logits; the other fields are then unused

  void validate() const {
    MENTOR_CHECK(std::isfinite(temperature) && temperature >= 0.0, "sampling: temperature ",
                 temperature, " is not a finite value >= 0");
    MENTOR_CHECK(top_k >= 0, "sampling: top_k ", top_k, " is negative (0 turns top-k off)");
    MENTOR_CHECK(top_p > 0.0 && top_p <= 1.0, "sampling: top_p ", top_p,
                 " is outside (0, 1] (1 turns top-p off)");
    MENTOR_CHECK(min_p >= 0.0 && min_p < 1.0, "sampling: min_p ", min_p,
                 " is outside [0, 1) (0 turns min-p off)");
  }
};

namespace detail {

inline constexpr float kMinTemperature = 1e-5f;

// Checks a row of logits (no NaN, no +inf, at least one finite value) and returns the index of
// its largest value, the first one on ties.
inline int64_t checked_argmax(const float* logits, int64_t vocab, const char* what) {
  int64_t best = -1;
  for (int64_t i = 0; i < vocab; ++i) {
    const float value = logits[i];
    MENTOR_CHECK(!std::isnan(value) && value != std::numeric_limits<float>::infinity(), what,
                 ": logit ", i, " is ", value, " (logits must be finite or -inf)");
    if (value != -std::numeric_limits<float>::infinity() && (best < 0 || value > logits[best]))
      best = i;
  }
  MENTOR_CHECK(best >= 0, what, ": every one of the ", vocab, " logits is -inf");
  return best;
}

// A sort key for a (value, token) pair: ascending keys are descending values, ties by ascending
// token, so one integer comparison orders both (faster than comparing through the index).
inline uint64_t descending_key(float value, int64_t token) {
  const auto bits = std::bit_cast<uint32_t>(value + 0.0f);  // + 0: -0 and +0 get one key
  const uint32_t ascending = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return (static_cast<uint64_t>(~ascending) << 32) | static_cast<uint32_t>(token);
}
inline int64_t key_token(uint64_t key) { return static_cast<int64_t>(key & 0xffffffffu); }

// Upstream's top_k_top_p_filtering on one row of (temperature-scaled) logits, in place: removed
// entries become -inf. On return weight[i] = exp(x[i] - max) for the kept entries and 0 for the
// removed ones, in double, for the caller's softmax. `select` (vocab floats), `keys` (vocab
// uint64) and `weight` (vocab doubles) are scratch. `argmax` is the index of the row's largest
// value, which every filter keeps.
inline void filter_row(float* x, int64_t vocab, int64_t argmax, int64_t top_k, double top_p,
                       float* select, uint64_t* keys, double* weight) {
  constexpr float kRemoved = -std::numeric_limits<float>::infinity();
  if (top_k > 0 && top_k < vocab) {  // k >= vocab keeps everything
    // The k-th largest value by selection, not a sort: O(vocab).
    std::copy(x, x + vocab, select);
    std::nth_element(select, select + (top_k - 1), select + vocab, std::greater<float>());
    const float threshold = select[top_k - 1];
    for (int64_t i = 0; i < vocab; ++i)
      if (x[i] < threshold) x[i] = kRemoved;
  }
  const double max_value = x[argmax];
  int64_t kept = 0;  // the surviving entries, for top-p
  double total = 0.0;
  for (int64_t i = 0; i < vocab; ++i) {
    if (x[i] == kRemoved) {
      weight[i] = 0.0;
    } else {
      total += weight[i] = std::exp(static_cast<double>(x[i]) - max_value);
      keys[kept++] = descending_key(x[i], i);
    }
  }
  if (top_p >= 1.0) return;
  // Top-p needs the shortest head of the descending order whose mass exceeds top_p, not the
  // order itself: select by mass (quickselect that halves the window around the crossing, O(n)
  // expected), then sort only the last small window. Everything before the window is kept,
  // everything after it removed. Ties are broken by token, so the result does not depend on the
  // selection's internals.
  const double mass_limit = top_p * total;  // cumulative probability > top_p, without dividing
  double before = 0.0;                      // the mass of keys[0, lo)
  int64_t lo = 0, hi = kept;                // the crossing is in keys[lo, hi)
  while (hi - lo > 32) {
    const int64_t mid = lo + (hi - lo) / 2;
    std::nth_element(keys + lo, keys + mid, keys + hi);
    double left = 0.0;
    for (int64_t j = lo; j < mid; ++j) left += weight[key_token(keys[j])];
    if (before + left > mass_limit) {
      hi = mid;
    } else {
      before += left;
      lo = mid;
    }
  }
  std::sort(keys + lo, keys + hi);
  int64_t keep = kept;  // no crossing (top_p within rounding of 1): keep all, like upstream
  for (int64_t j = lo; j < hi; ++j) {
    before += weight[key_token(keys[j])];
    if (before > mass_limit) {  // j is the first token over the threshold: keep it, drop the rest
      keep = j + 1;
      break;
    }
  }
  for (int64_t j = keep; j < kept; ++j) {
    x[key_token(keys[j])] = kRemoved;
    weight[key_token(keys[j])] = 0.0;
  }
}

}  // namespace detail

class Sampler {
 public:
  explicit Sampler(int64_t vocab) : vocab_(vocab) {
    MENTOR_CHECK(vocab >= 1 && vocab <= std::numeric_limits<uint32_t>::max(), "Sampler: vocab ",
                 vocab, " is outside [1, 2^32 - 1]");
    const auto n = static_cast<size_t>(vocab);
    scaled_.resize(n);
    select_.resize(n);
    keys_.resize(n);
    weight_.resize(n);
  }

  int64_t vocab() const { return vocab_; }

  // The filtered, normalized distribution upstream samples from (zeros where filtered); with
  // greedy, the one-hot of the argmax.
  void probabilities(const float* logits, const SamplingParams& params, float* probs) {
    const double total = weights(logits, params);
    for (int64_t i = 0; i < vocab_; ++i) probs[i] = static_cast<float>(weight_[i] / total);
  }

  // The token for one request at one step. The inverse CDF runs over the same double weights
  // probabilities() normalizes, in token-id order: the first token whose cumulative weight exceeds
  // u * total. Since u < 1 and the total is summed in the same order, that token exists and has a
  // nonzero weight; the clamp to the last nonzero token only guards the arithmetic.
  int64_t sample(const float* logits, const SamplingParams& params, uint64_t seed, int64_t step) {
    MENTOR_CHECK(step >= 0, "Sampler::sample: step ", step, " is negative");
    if (params.greedy) {
      params.validate();
      return detail::checked_argmax(logits, vocab_, "Sampler::sample");
    }
    const double total = weights(logits, params);
    const double target = static_cast<double>(philox_uniform_at(seed, 0, step)) * total;
    // A zero weight leaves the sum unchanged, so it can never be the first to pass the target.
    double cumulative = 0.0;
    int64_t last_nonzero = 0;  // overwritten: the largest logit always has a nonzero weight
    for (int64_t i = 0; i < vocab_; ++i) {
      cumulative += weight_[i];
      if (cumulative > target) return i;
      last_nonzero = weight_[i] > 0.0 ? i : last_nonzero;
    }
    return last_nonzero;
  }

 private:
  // Fills weight_ with the unnormalized filtered distribution and returns its sum (token-id order).
  double weights(const float* logits, const SamplingParams& params) {
    params.validate();
    const int64_t argmax = detail::checked_argmax(logits, vocab_, "Sampler");
    double total = 0.0;
    if (params.greedy) {
      std::fill(weight_.begin(), weight_.end(), 0.0);
      weight_[static_cast<size_t>(argmax)] = 1.0;
      return 1.0;
    }
    // Upstream scales in float32 (tensor / Python float), so the filters see the same values.
    const float temperature =
        std::max(static_cast<float>(params.temperature), detail::kMinTemperature);
    for (int64_t i = 0; i < vocab_; ++i) scaled_[i] = logits[i] / temperature;
    MENTOR_CHECK(std::isfinite(scaled_[argmax]), "Sampler: the largest logit ", logits[argmax],
                 " overflows float when divided by the temperature ", temperature);
    detail::filter_row(scaled_.data(), vocab_, argmax, params.top_k, params.top_p, select_.data(),
                       keys_.data(), weight_.data());
    // min-p: p_i < min_p * p_max  <=>  exp(x_i - max) < min_p, as the largest token has weight 1.
    if (params.min_p > 0.0)
      for (double& w : weight_)
        if (w < params.min_p) w = 0.0;
    for (double w : weight_) total += w;
    return total;
  }

  int64_t vocab_;
  std::vector<float> scaled_, select_;
  std::vector<uint64_t> keys_;
  std::vector<double> weight_;
};

// Upstream's top_k_top_p_filtering on one row, in place (-inf where removed): for the golden test
// and for callers that want the filtered logits themselves. Allocates its scratch.
inline void filter_top_k_top_p(float* logits, int64_t vocab, int64_t top_k, double top_p) {
  MENTOR_CHECK(vocab >= 1 && vocab <= std::numeric_limits<uint32_t>::max(),
               "filter_top_k_top_p: vocab ", vocab, " is outside [1, 2^32 - 1]");
  SamplingParams params;
  params.top_k = top_k;
  params.top_p = top_p;
  params.validate();
  const int64_t argmax = detail::checked_argmax(logits, vocab, "filter_top_k_top_p");
  const auto n = static_cast<size_t>(vocab);
  std::vector<float> select(n);
  std::vector<uint64_t> keys(n);
  std::vector<double> weight(n);
  detail::filter_row(logits, vocab, argmax, top_k, top_p, select.data(), keys.data(),
                     weight.data());
}

}  // namespace mentor::generate
