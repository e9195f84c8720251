// The per-token sampler (generate/sampling.hpp): LlamaGen's own filter and probabilities
// (tests/goldens/sampling_filter.safetensors, written by tools/reference/make_sampling_goldens.py
// from upstream's generate.py), chi-square tests of the draws against an independent float64
// reference, determinism of the counter-based draw, errors, and no heap allocation per token.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>
#include <string>
#include <vector>

#include "alloc_counter.hpp"
#include "catch.hpp"
#include "mentor/core/random.hpp"
#include "mentor/generate/sampling.hpp"
#include "mentor/io/safetensors.hpp"

namespace test_sampling {

using namespace mentor;
using generate::Sampler;
using generate::SamplingParams;

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

const io::SafeTensorsFile& goldens() {
  static io::SafeTensorsFile file = io::SafeTensorsFile::open(
      std::string(MENTOR_SOURCE_DIR) + "/tests/goldens/sampling_filter.safetensors");
  return file;
}

SamplingParams make_params(double temperature, int64_t top_k, double top_p, double min_p = 0.0) {
  SamplingParams params;
  params.temperature = temperature;
  params.top_k = top_k;
  params.top_p = top_p;
  params.min_p = min_p;
  return params;
}

// The filtered distribution computed from the definition in float64, on its own: full sort,
// top-k by the k-th value, softmax, nucleus by the cumulative sum, min-p against the largest
// probability, renormalised. Shares no code with the sampler.
std::vector<double> reference_probabilities(const std::vector<float>& logits,
                                            const SamplingParams& params) {
  const int64_t n = static_cast<int64_t>(logits.size());
  std::vector<double> x(logits.size());
  const double temperature = std::max(params.temperature, 1e-5);
  for (int64_t i = 0; i < n; ++i) x[i] = static_cast<double>(logits[i]) / temperature;
  std::vector<int64_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return x[a] > x[b]; });
  std::vector<bool> keep(logits.size(), true);
  if (params.top_k > 0) {
    const double threshold = x[order[std::min(params.top_k, n) - 1]];
    for (int64_t i = 0; i < n; ++i) keep[i] = x[i] >= threshold;
  }
  auto normalized = [&] {
    std::vector<double> p(logits.size(), 0.0);
    double total = 0.0;
    for (int64_t i = 0; i < n; ++i)
      if (keep[i]) total += p[i] = std::exp(x[i] - x[order[0]]);
    for (double& v : p) v /= total;
    return p;
  };
  if (params.top_p < 1.0) {
    std::vector<double> p = normalized();
    double cumulative = 0.0;
    bool over = false;
    for (int64_t j = 0; j < n; ++j) {
      const int64_t token = order[j];
      if (!keep[token]) continue;
      if (over) keep[token] = false;
      cumulative += p[token];
      if (cumulative > params.top_p) over = true;
    }
  }
  if (params.min_p > 0.0) {
    std::vector<double> p = normalized();
    const double largest = p[order[0]];
    for (int64_t i = 0; i < n; ++i)
      if (p[i] < params.min_p * largest) keep[i] = false;
  }
  return normalized();
}

// Regularized upper incomplete gamma Q(a, x) = Γ(a, x) / Γ(a): the power series of P for
// x < a + 1, else the continued fraction of Q (modified Lentz).
double regularized_gamma_q(double a, double x) {
  if (x <= 0.0) return 1.0;
  const double log_prefactor = -x + a * std::log(x) - std::lgamma(a);
  if (x < a + 1.0) {
    double term = 1.0 / a, sum = term;
    for (int n = 1; n < 100000 && std::abs(term) > std::abs(sum) * 1e-16; ++n) {
      term *= x / (a + n);
      sum += term;
    }
    return 1.0 - sum * std::exp(log_prefactor);
  }
  constexpr double tiny = 1e-300;
  double b = x + 1.0 - a, c = 1.0 / tiny, d = 1.0 / b, h = d;
  for (int i = 1; i < 100000; ++i) {
    const double an = -i * (i - a);
    b += 2.0;
    d = an * d + b;
    if (std::abs(d) < tiny) d = tiny;
    c = b + an / c;
    if (std::abs(c) < tiny) c = tiny;
    d = 1.0 / d;
    const double delta = d * c;
    h *= delta;
    if (std::abs(delta - 1.0) < 1e-16) break;
  }
  return std::exp(log_prefactor) * h;
}

double chi_square_p_value(double statistic, int64_t dof) {
  return regularized_gamma_q(0.5 * static_cast<double>(dof), 0.5 * statistic);
}

struct ChiSquare {
  double statistic = 0.0;
  int64_t bins = 0;
  double p_value = 1.0;
  int64_t filtered_hits = 0;  // draws of a token with probability 0
};

// Pearson's chi-square of the counts against the expected probabilities. Categories expected
// fewer than 5 times are pooled (rarest first) into bins of at least 5; a remainder below 5 joins
// the last pool, or the smallest regular bin when there is no pool.
ChiSquare chi_square(const std::vector<int64_t>& counts, const std::vector<double>& probs,
                     int64_t draws) {
  ChiSquare result;
  std::vector<std::pair<double, double>> bins;  // (expected, observed)
  std::vector<std::pair<double, double>> rare;
  for (size_t i = 0; i < probs.size(); ++i) {
    const double expected = probs[i] * static_cast<double>(draws);
    if (probs[i] == 0.0) {
      result.filtered_hits += counts[i];
      continue;
    }
    (expected >= 5.0 ? bins : rare).emplace_back(expected, static_cast<double>(counts[i]));
  }
  std::sort(rare.begin(), rare.end());
  std::pair<double, double> pool{0.0, 0.0};
  bool pooled = false;
  for (const auto& [expected, observed] : rare) {
    pool.first += expected;
    pool.second += observed;
    if (pool.first >= 5.0) {
      bins.push_back(pool);
      pool = {0.0, 0.0};
      pooled = true;
    }
  }
  if (pool.first > 0.0) {
    if (pooled) {
      bins.back().first += pool.first;
      bins.back().second += pool.second;
    } else {
      auto smallest = std::min_element(bins.begin(), bins.end());
      smallest->first += pool.first;
      smallest->second += pool.second;
    }
  }
  for (const auto& [expected, observed] : bins)
    result.statistic += (observed - expected) * (observed - expected) / expected;
  result.bins = static_cast<int64_t>(bins.size());
  result.p_value = chi_square_p_value(result.statistic, result.bins - 1);
  return result;
}

// Fixed logits without ties, spread over about 10 units.
std::vector<float> fixed_logits(int64_t vocab) {
  std::vector<float> logits(static_cast<size_t>(vocab));
  for (int64_t i = 0; i < vocab; ++i)
    logits[i] = static_cast<float>(2.5 * std::sin(0.37 * i * i + 1.3 * i) + 0.01 * i);
  return logits;
}

std::vector<int64_t> draw_counts(Sampler& sampler, const std::vector<float>& logits,
                                 const SamplingParams& params, uint64_t seed, int64_t draws) {
  std::vector<int64_t> counts(logits.size(), 0);
  for (int64_t step = 0; step < draws; ++step)
    ++counts[sampler.sample(logits.data(), params, seed, step)];
  return counts;
}

}  // namespace

TEST_CASE("the chi-square p-value matches closed forms", "[generate][sampling]") {
  for (double x : {0.01, 0.3, 1.0, 2.5, 7.0, 30.0}) {
    CHECK(regularized_gamma_q(1.0, x) == Approx(std::exp(-x)).epsilon(1e-12));
    CHECK(regularized_gamma_q(0.5, x) == Approx(std::erfc(std::sqrt(x))).epsilon(1e-10));
    const double q3 = std::exp(-x) * (1.0 + x + x * x / 2.0);  // Q(3, x), integer a
    CHECK(regularized_gamma_q(3.0, x) == Approx(q3).epsilon(1e-12));
  }
  // Tabulated critical values of the chi-square distribution.
  CHECK(chi_square_p_value(10.828, 1) == Approx(0.001).epsilon(1e-3));
  CHECK(chi_square_p_value(18.307, 10) == Approx(0.05).epsilon(1e-3));
  CHECK(chi_square_p_value(124.342, 100) == Approx(0.05).epsilon(1e-3));
}

TEST_CASE("sampling filter and probabilities match LlamaGen's own code", "[generate][sampling]") {
  const io::SafeTensorsFile& file = goldens();
  REQUIRE(file.metadata().size() >= 30);
  double worst_filtered = 0.0, worst_probs = 0.0;
  int64_t cases = 0, kept_total = 0;
  for (const auto& [name, json] : file.metadata()) {
    if (name.rfind("v", 0) != 0) continue;
    const nlohmann::json meta = nlohmann::json::parse(json);
    const auto vocab = meta.at("vocab").get<int64_t>(), row = meta.at("row").get<int64_t>();
    const SamplingParams params =
        make_params(meta.at("temperature").get<double>(), meta.at("top_k").get<int64_t>(),
                    meta.at("top_p").get<double>());
    INFO("case " << name);
    const std::vector<float> all = file.read_as<float>("v" + std::to_string(vocab) + ".logits");
    const std::vector<float> logits(all.begin() + row * vocab, all.begin() + (row + 1) * vocab);
    const std::vector<uint8_t> kept = file.read_as<uint8_t>(name + ".kept");
    const std::vector<float> golden_filtered = file.read_as<float>(name + ".filtered");
    const std::vector<float> golden_probs = file.read_as<float>(name + ".probs");
    REQUIRE(kept.size() == logits.size());

    // upstream's filter on the temperature-scaled row
    std::vector<float> filtered(logits);
    const float temperature = std::max(static_cast<float>(params.temperature), 1e-5f);
    for (float& v : filtered) v /= temperature;
    generate::filter_top_k_top_p(filtered.data(), vocab, params.top_k, params.top_p);

    Sampler sampler(vocab);
    std::vector<float> probs(logits.size());
    sampler.probabilities(logits.data(), params, probs.data());

    size_t j = 0;
    for (int64_t i = 0; i < vocab; ++i) {
      INFO("token " << i);
      REQUIRE((filtered[i] != kNegInf) == (kept[i] != 0));  // the kept set, exactly
      if (!kept[i]) {
        REQUIRE(probs[i] == 0.0f);
        continue;
      }
      REQUIRE(j < golden_probs.size());
      const double filtered_error =
          std::abs(filtered[i] - golden_filtered[j]) / std::abs(golden_filtered[j]);
      // Probabilities that float32 flushes to (near) zero when the temperature is 1e-5 have no
      // relative accuracy in upstream's float softmax: compare them absolutely.
      const double prob_error = golden_probs[j] > 1e-30f
                                    ? std::abs(probs[i] - golden_probs[j]) / golden_probs[j]
                                    : std::abs(probs[i] - golden_probs[j]) * 1e30;
      CHECK(filtered_error <= 1e-6);
      CHECK(prob_error <= 1e-6);
      worst_filtered = std::max(worst_filtered, filtered_error);
      worst_probs = std::max(worst_probs, prob_error);
      ++j;
    }
    REQUIRE(j == golden_probs.size());
    ++cases;
    kept_total += static_cast<int64_t>(j);
  }
  std::cout << "sampling goldens: " << cases << " cases, " << kept_total
            << " kept tokens; worst relative error: filtered logits " << worst_filtered
            << ", probabilities " << worst_probs << "\n";
  REQUIRE(cases == static_cast<int64_t>(file.metadata().size()));
}

TEST_CASE("draws follow the filtered distribution (chi-square)", "[generate][sampling]") {
  constexpr int64_t kVocab = 200, kDraws = 100000;
  const std::vector<float> logits = fixed_logits(kVocab);
  Sampler sampler(kVocab);
  struct Setting {
    const char* name;
    SamplingParams params;
  };
  const Setting settings[] = {
      {"plain T=1", make_params(1.0, 0, 1.0)},
      {"T=0.7 top-k 20", make_params(0.7, 20, 1.0)},
      {"top-p 0.9", make_params(1.0, 0, 0.9)},
      {"min-p 0.05", make_params(1.0, 0, 1.0, 0.05)},
      {"T=0.9 top-k 100 top-p 0.8 min-p 0.01", make_params(0.9, 100, 0.8, 0.01)},
  };
  uint64_t seed = 1000;
  for (const Setting& setting : settings) {
    INFO(setting.name);
    const std::vector<double> expected = reference_probabilities(logits, setting.params);
    // probabilities() agrees with the reference too (float output)
    std::vector<float> probs(kVocab);
    sampler.probabilities(logits.data(), setting.params, probs.data());
    for (int64_t i = 0; i < kVocab; ++i) {
      INFO("token " << i);
      REQUIRE((probs[i] == 0.0f) == (expected[i] == 0.0));
      REQUIRE(probs[i] == Approx(expected[i]).epsilon(1e-6));
    }
    const std::vector<int64_t> counts =
        draw_counts(sampler, logits, setting.params, seed++, kDraws);
    const ChiSquare test = chi_square(counts, expected, kDraws);
    const auto support =
        std::count_if(expected.begin(), expected.end(), [](double p) { return p > 0; });
    std::cout << "chi-square " << setting.name << ": " << support << " tokens, " << test.bins
              << " bins, statistic " << test.statistic << ", p " << test.p_value << "\n";
    CHECK(test.filtered_hits == 0);
    CHECK(test.bins >= 10);
    CHECK(test.p_value > 0.001);
  }

  // The test can tell distributions apart: T=1 draws against the T=0.7 distribution.
  const std::vector<int64_t> counts =
      draw_counts(sampler, logits, make_params(1.0, 0, 1.0), 77, kDraws);
  const ChiSquare wrong =
      chi_square(counts, reference_probabilities(logits, make_params(0.7, 0, 1.0)), kDraws);
  std::cout << "chi-square T=1 draws against T=0.7: p " << wrong.p_value << "\n";
  CHECK(wrong.p_value < 1e-6);
}

TEST_CASE("a draw depends only on (seed, step)", "[generate][sampling]") {
  constexpr int64_t kVocab = 300, kSteps = 200;
  const std::vector<float> logits = fixed_logits(kVocab);
  const SamplingParams params = make_params(1.0, 0, 0.95);
  Sampler a(kVocab), b(kVocab);
  std::vector<int64_t> forward(kSteps), other_seed(kSteps);
  for (int64_t step = 0; step < kSteps; ++step)
    forward[step] = a.sample(logits.data(), params, 42, step);
  // another sampler, steps in reverse, another request's draws interleaved: the same tokens
  for (int64_t step = kSteps - 1; step >= 0; --step) {
    CHECK(b.sample(logits.data(), params, 42, step) == forward[step]);
    other_seed[step] = b.sample(logits.data(), params, 43, step);
  }
  int64_t differ = 0;
  for (int64_t step = 0; step < kSteps; ++step) differ += forward[step] != other_seed[step];
  CHECK(differ > kSteps / 2);
  // the draw uses uniform step of the seed's Philox stream
  const float u = philox_uniform_at(42, 0, 5);
  std::vector<float> probs(kVocab);
  a.probabilities(logits.data(), params, probs.data());
  double cumulative = 0.0;
  int64_t expected = -1;
  for (int64_t i = 0; i < kVocab && expected < 0; ++i) {
    cumulative += probs[i];
    if (probs[i] > 0 && cumulative > u) expected = i;
  }
  CHECK(forward[5] == expected);
}

TEST_CASE("greedy, clamping and edge cases", "[generate][sampling]") {
  SECTION("greedy picks the first largest raw logit") {
    const std::vector<float> logits{1.0f, 5.0f, kNegInf, 5.0f, -2.0f};
    Sampler sampler(5);
    SamplingParams params = make_params(0.3, 1, 0.5);
    params.greedy = true;
    for (int64_t step = 0; step < 20; ++step)
      CHECK(sampler.sample(logits.data(), params, 9, step) == 1);
    std::vector<float> probs(5);
    sampler.probabilities(logits.data(), params, probs.data());
    CHECK(probs == std::vector<float>{0, 1, 0, 0, 0});
  }
  SECTION("top-k keeps ties at the k-th value") {
    std::vector<float> logits{3.0f, 1.0f, 2.0f, 2.0f, 0.5f};
    generate::filter_top_k_top_p(logits.data(), 5, 2, 1.0);
    CHECK(logits == std::vector<float>{3.0f, kNegInf, 2.0f, 2.0f, kNegInf});
  }
  SECTION("top-p keeps the first token over the threshold") {
    // probabilities 0.5, 0.3, 0.2 (by log): top_p 0.6 keeps the first two, 0.5 only the first
    const float l5 = std::log(0.5f), l3 = std::log(0.3f), l2 = std::log(0.2f);
    std::vector<float> logits{l2, l5, l3};
    generate::filter_top_k_top_p(logits.data(), 3, 0, 0.6);
    CHECK(logits == std::vector<float>{kNegInf, l5, l3});
    logits = {l2, l5, l3};
    generate::filter_top_k_top_p(logits.data(), 3, 0, 0.45);
    CHECK(logits == std::vector<float>{kNegInf, l5, kNegInf});
  }
  SECTION("masked (-inf) logits are never drawn") {
    std::vector<float> logits = fixed_logits(50);
    for (int64_t i = 0; i < 50; i += 3) logits[i] = kNegInf;
    Sampler sampler(50);
    for (int64_t step = 0; step < 2000; ++step)
      CHECK(sampler.sample(logits.data(), make_params(1.0, 0, 1.0), 5, step) % 3 != 0);
  }
  SECTION("a uniform close to 1 draws the last kept token, never a filtered one") {
    int64_t step = 0;
    while (philox_uniform_at(11, 0, step) < 1.0f - 2e-6f) ++step;  // about 5e5 candidates
    // the two kept tokens (top-k 2) are the first ids; the filtered tail follows them
    std::vector<float> logits(1000, -3.0f);
    logits[0] = 2.0f;
    logits[1] = 1.0f;
    for (int64_t i = 2; i < 1000; ++i) logits[i] = -3.0f - 1e-3f * static_cast<float>(i);
    Sampler sampler(1000);
    CHECK(sampler.sample(logits.data(), make_params(1.0, 2, 1.0), 11, step) == 1);
  }
  SECTION("temperature 0 is upstream's 1e-5: the argmax almost surely") {
    const std::vector<float> logits = fixed_logits(100);
    const auto argmax = std::max_element(logits.begin(), logits.end()) - logits.begin();
    Sampler sampler(100);
    for (int64_t step = 0; step < 100; ++step)
      CHECK(sampler.sample(logits.data(), make_params(0.0, 0, 1.0), 3, step) == argmax);
  }
  SECTION("top-k beyond the vocabulary is off") {
    const std::vector<float> logits = fixed_logits(64);
    Sampler sampler(64);
    std::vector<float> clamped(64), off(64);
    sampler.probabilities(logits.data(), make_params(1.0, 1000, 1.0), clamped.data());
    sampler.probabilities(logits.data(), make_params(1.0, 0, 1.0), off.data());
    CHECK(clamped == off);
  }
}

TEST_CASE("bad sampling parameters and logits are errors naming the value",
          "[generate][sampling]") {
  using Catch::Contains;
  const std::vector<float> logits = fixed_logits(10);
  Sampler sampler(10);
  auto sample_with = [&](const SamplingParams& params) {
    return sampler.sample(logits.data(), params, 0, 0);
  };
  REQUIRE_THROWS_WITH(sample_with(make_params(-0.5, 0, 1.0)), Contains("temperature -0.5"));
  REQUIRE_THROWS_WITH(sample_with(make_params(std::nan(""), 0, 1.0)), Contains("temperature nan"));
  REQUIRE_THROWS_WITH(sample_with(make_params(INFINITY, 0, 1.0)), Contains("temperature inf"));
  REQUIRE_THROWS_WITH(sample_with(make_params(1.0, -3, 1.0)), Contains("top_k -3"));
  REQUIRE_THROWS_WITH(sample_with(make_params(1.0, 0, 0.0)), Contains("top_p 0 is outside (0, 1]"));
  REQUIRE_THROWS_WITH(sample_with(make_params(1.0, 0, 1.5)), Contains("top_p 1.5"));
  REQUIRE_THROWS_WITH(sample_with(make_params(1.0, 0, std::nan(""))), Contains("top_p nan"));
  REQUIRE_THROWS_WITH(sample_with(make_params(1.0, 0, 1.0, 1.0)),
                      Contains("min_p 1 is outside [0, 1)"));
  REQUIRE_THROWS_WITH(sample_with(make_params(1.0, 0, 1.0, -0.1)), Contains("min_p -0.1"));
  SamplingParams greedy = make_params(-1.0, 0, 1.0);
  greedy.greedy = true;
  REQUIRE_THROWS_WITH(sample_with(greedy), Contains("temperature -1"));
  REQUIRE_THROWS_WITH(sampler.sample(logits.data(), SamplingParams{}, 0, -4), Contains("step -4"));
  REQUIRE_THROWS_WITH(Sampler(0), Contains("vocab 0"));

  std::vector<float> bad = logits;
  bad[7] = std::nanf("");
  REQUIRE_THROWS_WITH(sampler.sample(bad.data(), SamplingParams{}, 0, 0),
                      Contains("logit 7 is nan"));
  bad[7] = INFINITY;
  REQUIRE_THROWS_WITH(sampler.sample(bad.data(), SamplingParams{}, 0, 0),
                      Contains("logit 7 is inf"));
  std::fill(bad.begin(), bad.end(), kNegInf);
  REQUIRE_THROWS_WITH(sampler.sample(bad.data(), SamplingParams{}, 0, 0),
                      Contains("every one of the 10 logits is -inf"));
  std::vector<float> huge = logits;
  huge[2] = 1e36f;
  REQUIRE_THROWS_WITH(sampler.sample(huge.data(), make_params(0.0, 0, 1.0), 0, 0),
                      Contains("overflows"));
  REQUIRE_THROWS_WITH(generate::filter_top_k_top_p(bad.data(), 10, 0, 0.5),
                      Contains("filter_top_k_top_p"));
}

TEST_CASE("sample() allocates nothing", "[generate][sampling]") {
  // the counter sees allocations at all (a direct call: a new-expression could be elided)
  const int64_t start = mentor_test::allocations();
  void* block = ::operator new(64);
  ::operator delete(block);
  REQUIRE(mentor_test::allocations() == start + 1);

  constexpr int64_t kVocab = 16384;
  const std::vector<float> logits = fixed_logits(kVocab);
  std::vector<float> probs(kVocab);
  SamplingParams greedy;
  greedy.greedy = true;
  const SamplingParams settings[] = {
      make_params(1.0, 0, 1.0),          make_params(0.9, 5000, 1.0),   make_params(1.0, 0, 0.9),
      make_params(1.0, 1000, 0.8, 0.05), make_params(0.0, 0, 1.0, 0.1), greedy};
  Sampler sampler(kVocab);
  const int64_t before = mentor_test::allocations();
  int64_t checksum = 0;
  for (const SamplingParams& params : settings) {
    for (int64_t step = 0; step < 20; ++step)
      checksum += sampler.sample(logits.data(), params, 1, step);
    sampler.probabilities(logits.data(), params, probs.data());
  }
  const int64_t after = mentor_test::allocations();
  CHECK(after - before == 0);
  CHECK(checksum > 0);
}

}  // namespace test_sampling
