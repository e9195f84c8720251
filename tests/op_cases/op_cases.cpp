// The op-case program: every case of the registry (registry.hpp) checked or timed in one mode.
//
//   op_cases list [--cases] [--without NAME]...  the ops that have cases (--cases: the cases)
//   op_cases coverage [--without NAME]...        reads the exported op names on stdin
//                                                (tools/check-op-cases.sh); fails naming each op
//                                                without a case, and each case of no exported op
//   op_cases golden [--filter TEXT]              double, forward and gradients, against PyTorch
//                                                (tests/goldens/ops.safetensors)
//   op_cases gradient [--filter TEXT]            autograd against central finite differences, in
//                                                double, for every case with a floating output
//   op_cases consistency [--filter TEXT]         CUDA float and bf16 against the CPU in float,
//                                                forward and backward (skips without a GPU)
//   op_cases perf [--filter TEXT] [--min-time S] forward and backward time and GB/s or GFLOP/s at
//                                                the perf shapes: CPU float, and CUDA float and
//                                                bf16 when a GPU is present
//
// --without NAME leaves out the cases of op NAME (or the case NAME), to show that coverage fails.
// Exit status: 0 when every case passes (or the mode cannot run here: no GPU), 1 when one fails,
// 2 on a usage error.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "mentor/autograd/gradcheck.hpp"
#include "mentor/core/cuda_api.hpp"
#include "mentor/core/tensor.hpp"
#include "mentor/io/safetensors.hpp"
#include "mentor/ops/shape_ops.hpp"
#include "registry.hpp"

namespace mentor::op_cases {

namespace {

struct Options {
  std::string mode;
  std::string filter;             // a substring of the case names to run
  std::set<std::string> without;  // ops or cases left out
  bool list_cases = false;        // list: cases rather than ops
  double min_time = 0.2;          // perf: seconds per measurement
};

// ---- inputs ---------------------------------------------------------------------------------

// A case's inputs on the host by kind, floating ones in H: double (goldens, gradients) or float
// (consistency, perf; rounded to bf16 from there).
template <class H>
struct HostInputs {
  std::vector<Tensor<H>> x;          // Floating and Constant, in the order of the specs
  std::vector<bool> differentiated;  // per x: Floating
  std::vector<Tensor<float>> float32;
  std::vector<Tensor<int64_t>> ids;
  std::vector<Tensor<bool>> masks;
};

// FNV-1a of the case name: every case draws its own inputs, the same on every run.
uint64_t seed_of(const std::string& name) {
  uint64_t h = 1469598103934665603ull;
  for (char ch : name) h = (h ^ static_cast<unsigned char>(ch)) * 1099511628211ull;
  return h;
}

template <class H>
Tensor<H> random_values(const InputSpec& spec, const Shape& shape, Generator& gen) {
  Tensor<H> t =
      Tensor<H>::rand(shape, gen, static_cast<float>(spec.low), static_cast<float>(spec.high));
  if (!spec.random_sign) return t;
  std::vector<H> v = t.to_vector();
  const std::vector<float> coin = Tensor<float>::rand(shape, gen).to_vector();
  for (size_t i = 0; i < v.size(); ++i)
    if (coin[i] < 0.5f) v[i] = -v[i];
  return Tensor<H>::from_vector(v, shape);
}

template <class H>
HostInputs<H> generate(const Case& c, bool perf) {
  Generator gen(seed_of(c.name));
  HostInputs<H> h;
  for (const InputSpec& spec : c.inputs) {
    const Shape shape = perf && spec.has_perf_shape() ? spec.perf_shape : spec.shape;
    switch (spec.kind) {
      case InputKind::Floating:
      case InputKind::Constant:
        h.x.push_back(random_values<H>(spec, shape, gen));
        h.differentiated.push_back(spec.kind == InputKind::Floating);
        break;
      case InputKind::Float32:
        h.float32.push_back(random_values<float>(spec, shape, gen));
        break;
      case InputKind::Index: {
        const int64_t bound = perf && spec.perf_bound > 0 ? spec.perf_bound : spec.bound;
        std::vector<int64_t> ids;
        for (float u : Tensor<float>::rand(shape, gen).to_vector())
          ids.push_back(std::min(static_cast<int64_t>(u * static_cast<float>(bound)), bound - 1));
        h.ids.push_back(Tensor<int64_t>::from_vector(ids, shape));
        break;
      }
      case InputKind::Mask: {
        std::vector<bool> bits;
        for (float u : Tensor<float>::rand(shape, gen).to_vector())
          bits.push_back(u < static_cast<float>(spec.p_true));
        h.masks.push_back(Tensor<bool>::from_vector(bits, shape));
        break;
      }
    }
  }
  return h;
}

// A fresh tensor of element type T (never the host tensor itself: its gradient is its own).
template <class T, class S>
Tensor<T> converted(const Tensor<S>& t) {
  if constexpr (std::is_same_v<T, S>)
    return t.detach().clone();
  else
    return t.template to<T>();
}

template <class D, class X>
Tensor<typename X::value_type, D> on_device(const X& t) {
  if constexpr (std::is_same_v<D, CPU>)
    return t;
  else
    return t.template to<D>();
}

template <class X>
auto on_host(const X& t) {
  if constexpr (std::is_same_v<typename X::device_type, CPU>)
    return t;
  else
    return t.template to<CPU>();
}

// The inputs as the callable for (T, D) takes them; the Floating ones require grad if `grad`.
// `Rounding` = bf16 rounds float inputs to bf16 and back (the reference of a bf16 run).
template <class T, class D, class Rounding = T, class H>
Inputs<T, D> to_inputs(const HostInputs<H>& h, bool grad) {
  Inputs<T, D> in;
  for (size_t i = 0; i < h.x.size(); ++i) {
    Tensor<T, D> t = on_device<D>(converted<T>(converted<Rounding>(h.x[i])));
    if (grad && h.differentiated[i]) t.requires_grad_();
    in.x.push_back(t);
  }
  for (const auto& t : h.float32) in.float32.push_back(on_device<D>(t));
  for (const auto& t : h.ids) in.ids.push_back(on_device<D>(t));
  for (const auto& t : h.masks) in.masks.push_back(on_device<D>(t));
  return in;
}

// All floating outputs as one tensor (flattened and joined when there are several), so that one
// cotangent and one backward cover them all.
template <class T, class D>
Tensor<T, D> joined(const std::vector<Tensor<T, D>>& outputs) {
  if (outputs.size() == 1) return outputs[0];
  std::vector<Tensor<T, D>> flat;
  for (const auto& t : outputs) flat.push_back(t.reshape(Shape{t.numel()}));
  return concat(flat, 0);
}

// ---- comparisons ----------------------------------------------------------------------------

template <class X>
std::vector<double> host_doubles(const X& t) {
  using T = typename X::value_type;
  std::vector<double> out;
  for (const T& v : on_host(t).to_vector())
    out.push_back(static_cast<double>(static_cast<acc_t<T>>(v)));
  return out;
}

// ‖a − b‖ / max(‖b‖, tiny).
double rel_error(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

// The worst rel_error over the slices of dimension 0 (rows) of equally long a and b.
double worst_row_error(const std::vector<double>& a, const std::vector<double>& b, int64_t rows) {
  const size_t n = rows > 0 ? a.size() / static_cast<size_t>(rows) : 0;
  double worst = 0;
  for (size_t r = 0; n > 0 && r < static_cast<size_t>(rows); ++r) {
    const std::vector<double> ar(a.begin() + r * n, a.begin() + (r + 1) * n);
    const std::vector<double> br(b.begin() + r * n, b.begin() + (r + 1) * n);
    worst = std::max(worst, rel_error(ar, br));
  }
  return worst;
}

// One case's outcome: the worst forward and gradient errors seen, or what failed.
struct Outcome {
  double forward = 0, gradient = 0;
  std::vector<std::string> failures;
  bool skipped = false;  // nothing to check in this mode (the note says why)
  std::string note;

  void check(bool ok, const std::string& what) {
    if (!ok) failures.push_back(what);
  }
};

std::string sci(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2e", v);
  return text;
}

// a against reference b: same shape (a golden's [1] for a scalar counts as the same), relative
// error within tolerance; returns the error.
template <class X, class Y>
double compare(Outcome& o, const std::string& what, const X& a, const Y& b, double tolerance,
               bool by_rows = false) {
  const bool same_shape = a.shape() == b.shape() || (a.numel() == 1 && b.numel() == 1);
  o.check(same_shape, what + ": shape " + a.shape().str() + " against " + b.shape().str());
  if (!same_shape) return INFINITY;
  const std::vector<double> av = host_doubles(a), bv = host_doubles(b);
  const double err =
      by_rows && b.dim() > 0 ? worst_row_error(av, bv, b.size(0)) : rel_error(av, bv);
  o.check(err <= tolerance, what + ": relative error " + sci(err) + " > " + sci(tolerance));
  return std::isnan(err) ? INFINITY : err;
}

template <class X, class Y>
void compare_indices(Outcome& o, const std::string& what, const X& a, const Y& b) {
  o.check(a.shape() == b.shape() && on_host(a).to_vector() == on_host(b).to_vector(),
          what + ": indices differ");
}

// f's outcome, or a failure naming what it threw.
template <class F>
Outcome guarded(F&& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    Outcome o;
    o.failures.push_back(std::string("threw: ") + e.what());
    return o;
  }
}

bool any_of(const std::vector<bool>& flags) {
  return std::find(flags.begin(), flags.end(), true) != flags.end();
}

// ---- golden ---------------------------------------------------------------------------------

const io::SafeTensorsFile& goldens() {
  static const io::SafeTensorsFile file =
      io::SafeTensorsFile::open(std::string(MENTOR_SOURCE_DIR) + "/tests/goldens/ops.safetensors");
  return file;
}

template <class T>
Tensor<T> read_golden(const std::string& key) {
  const auto& info = goldens().info(key);
  return Tensor<T>::from_vector(goldens().read_as<T>(key), Shape(info.shape));
}

// The key suffix of output i (values first, then indices) of a case with `count` outputs.
std::string output_suffix(const Case& c, size_t i, size_t count) {
  if (i < c.golden_outputs.size()) return "." + c.golden_outputs[i];
  return count == 1 ? "" : "." + std::to_string(i);
}

Outcome golden_case(const Case& c) {
  const std::string& prefix = c.golden_prefix;
  HostInputs<double> h;
  for (const InputSpec& spec : c.inputs) {
    const std::string key = prefix + ".in." + spec.name;
    switch (spec.kind) {
      case InputKind::Floating:
      case InputKind::Constant:
        h.x.push_back(read_golden<double>(key));
        h.differentiated.push_back(spec.kind == InputKind::Floating);
        break;
      case InputKind::Float32:
        h.float32.push_back(read_golden<double>(key).to<float>());
        break;
      case InputKind::Index:
        h.ids.push_back(read_golden<int64_t>(key));
        break;
      case InputKind::Mask:
        h.masks.push_back(read_golden<uint8_t>(key).to<bool>());
        break;
    }
  }
  Inputs<double, CPU> in = to_inputs<double, CPU>(h, true);
  const Outputs<double, CPU> out = c.cpu_double(in);
  const size_t count = out.values.size() + out.indices.size();
  Outcome o;
  for (size_t i = 0; i < out.values.size(); ++i) {
    const std::string key = prefix + ".out" + output_suffix(c, i, count);
    o.forward = std::max(o.forward, compare(o, key, out.values[i], read_golden<double>(key),
                                            c.tolerance.golden_forward, c.golden_rows));
  }
  for (size_t j = 0; j < out.indices.size(); ++j) {
    const std::string key = prefix + ".out" + output_suffix(c, out.values.size() + j, count);
    compare_indices(o, key, out.indices[j], read_golden<int64_t>(key));
  }

  // Gradients of Σ sum(value_i · cot_i) over the outputs that have a cotangent.
  std::vector<Tensor<double>> cots;
  bool any_cot = false;
  for (size_t i = 0; i < out.values.size(); ++i) {
    const std::string key = prefix + ".cot" + output_suffix(c, i, count);
    const bool stored = goldens().contains(key);
    any_cot = any_cot || stored;
    cots.push_back(stored ? read_golden<double>(key).reshape(out.values[i].shape())
                          : Tensor<double>::zeros(out.values[i].shape()));
  }
  if (!any_cot) {
    o.note = "forward only (no cotangent stored)";
    return o;
  }
  joined(out.values).backward(joined(cots));
  size_t floating = 0;
  for (const InputSpec& spec : c.inputs) {
    if (spec.kind != InputKind::Floating && spec.kind != InputKind::Constant) continue;
    const Tensor<double>& x = in.x[floating++];
    const std::string key = prefix + ".grad." + spec.name;
    if (spec.kind != InputKind::Floating || !goldens().contains(key)) continue;
    o.check(x.grad().defined(), key + ": no gradient reached the input");
    if (x.grad().defined())
      o.gradient = std::max(o.gradient, compare(o, key, x.grad(), read_golden<double>(key),
                                                c.tolerance.golden_gradient, c.golden_rows));
  }
  return o;
}

// ---- gradient -------------------------------------------------------------------------------

Outcome gradient_case(const Case& c) {
  Outcome o;
  const HostInputs<double> h = generate<double>(c, false);
  if (!any_of(h.differentiated)) {
    o.skipped = true;
    o.note = "no differentiated input";
    return o;
  }
  {
    NoGradGuard no_grad;
    if (c.cpu_double(to_inputs<double, CPU>(h, false)).values.empty()) {
      o.skipped = true;
      o.note = "no floating output";
      return o;
    }
  }
  std::vector<Tensor<double>> wrt;
  for (size_t i = 0; i < h.x.size(); ++i)
    if (h.differentiated[i]) wrt.push_back(h.x[i]);
  auto f = [&](const std::vector<Tensor<double>>& args) {
    Inputs<double, CPU> in = to_inputs<double, CPU>(h, false);
    for (size_t i = 0, next = 0; i < in.x.size(); ++i)
      if (h.differentiated[i]) in.x[i] = args[next++];
    return joined(c.cpu_double(in).values);
  };
  const auto grads =
      autograd::finite_difference_gradients(f, wrt, c.tolerance.step, seed_of(c.name));
  for (size_t which = 0; which < grads.size(); ++which) {
    const double err = rel_error(grads[which].analytic, grads[which].numeric);
    o.gradient = std::max(o.gradient, std::isnan(err) ? INFINITY : err);
    o.check(err <= c.tolerance.gradient, "gradient of input " + std::to_string(which) + " " +
                                             grads[which].shape.str() + ": relative error " +
                                             sci(err) + " > " + sci(c.tolerance.gradient));
  }
  return o;
}

// ---- consistency ----------------------------------------------------------------------------

#if defined(MENTOR_WITH_CUDA)
// The case on CUDA in T against the CPU in float on the same (T-rounded) inputs and cotangent.
template <class T>
Outcome cuda_case(const Case& c, const Runner<T, CUDA>& run, double tolerance) {
  Outcome o;
  const HostInputs<float> h = generate<float>(c, false);
  Inputs<float, CPU> ref_in = to_inputs<float, CPU, T>(h, true);
  Inputs<T, CUDA> gpu_in = to_inputs<T, CUDA>(h, true);
  const Outputs<float, CPU> ref = c.cpu_float(ref_in);
  const Outputs<T, CUDA> gpu = run(gpu_in);
  o.check(ref.values.size() == gpu.values.size() && ref.indices.size() == gpu.indices.size(),
          "the devices return different numbers of outputs");
  if (!o.failures.empty()) return o;
  for (size_t i = 0; i < ref.values.size(); ++i)
    o.forward = std::max(o.forward, compare(o, "output " + std::to_string(i), gpu.values[i],
                                            ref.values[i], tolerance));
  for (size_t j = 0; j < ref.indices.size(); ++j)
    compare_indices(o, "index output " + std::to_string(j), gpu.indices[j], ref.indices[j]);
  if (ref.values.empty() || !any_of(h.differentiated)) return o;

  const Tensor<float> ref_joined = joined(ref.values);
  Generator gen(seed_of(c.name) + 1);
  const Tensor<T> cot = Tensor<float>::randn(ref_joined.shape(), gen).template to<T>();
  ref_joined.backward(converted<float>(cot));
  joined(gpu.values).backward(cot.template to<CUDA>());
  for (size_t i = 0; i < h.x.size(); ++i) {
    if (!h.differentiated[i]) continue;
    const std::string what = "gradient of input " + std::to_string(i);
    const bool reached = ref_in.x[i].grad().defined() && gpu_in.x[i].grad().defined();
    o.check(reached, what + ": no gradient reached the input");
    if (reached)
      o.gradient =
          std::max(o.gradient, compare(o, what, gpu_in.x[i].grad(), ref_in.x[i].grad(), tolerance));
  }
  return o;
}
#endif

// ---- perf -----------------------------------------------------------------------------------

template <class D>
void synchronize() {
#if defined(MENTOR_WITH_CUDA)
  if constexpr (std::is_same_v<D, CUDA>) cuda::synchronize();
#endif
}

// Mean seconds of `work` (after `prepare`, untimed) over at least two calls and min_time seconds,
// after one warm-up call.
template <class D, class Prepare, class Work>
double seconds_per_call(double min_time, Prepare&& prepare, Work&& work) {
  using Clock = std::chrono::steady_clock;
  prepare();
  work();
  synchronize<D>();
  double total = 0;
  int calls = 0;
  while ((total < min_time || calls < 2) && calls < 1000) {
    prepare();
    synchronize<D>();
    const auto start = Clock::now();
    work();
    synchronize<D>();
    total += std::chrono::duration<double>(Clock::now() - start).count();
    ++calls;
  }
  return total / calls;
}

template <class T, class D>
double bytes_of(const std::vector<Tensor<T, D>>& tensors) {
  double bytes = 0;
  for (const auto& t : tensors) bytes += static_cast<double>(t.nbytes());
  return bytes;
}
template <class T, class D>
double input_bytes(const Inputs<T, D>& in) {
  return bytes_of(in.x) + bytes_of(in.float32) + bytes_of(in.ids) + bytes_of(in.masks);
}

struct Timing {
  double forward_s = 0, backward_s = 0;  // backward_s 0: not differentiable
  double forward_work = 0, backward_work = 0;
};

// Forward without recording; backward alone (its forward untimed; a case with several outputs
// includes their join's, a concat's). Work: the case's FLOPs, or else the bytes of every tensor
// touched once: forward reads the inputs and writes the outputs, backward reads the outputs'
// gradient and each differentiated input and writes its gradient.
template <class T, class D>
Timing time_case(const Case& c, const Runner<T, D>& run, const HostInputs<float>& h,
                 double min_time) {
  Timing t;
  std::vector<Shape> shapes;
  for (const InputSpec& spec : c.inputs)
    shapes.push_back(spec.has_perf_shape() ? spec.perf_shape : spec.shape);
  const Inputs<T, D> in = to_inputs<T, D>(h, false);
  Outputs<T, D> out;
  {
    NoGradGuard no_grad;
    t.forward_s = seconds_per_call<D>(
        min_time, [] {}, [&] { out = run(in); });
  }
  double differentiated_bytes = 0;
  for (size_t i = 0; i < in.x.size(); ++i)
    if (h.differentiated[i]) differentiated_bytes += static_cast<double>(in.x[i].nbytes());
  // Outputs that are views of an input (split, chunk) move nothing: a forward of views only has
  // no work to count.
  double output_bytes = bytes_of(out.indices);
  for (const auto& v : out.values) {
    const bool view = std::any_of(in.x.begin(), in.x.end(), [&](const Tensor<T, D>& x) {
      return x.storage() == v.storage();
    });
    if (!view) output_bytes += static_cast<double>(v.nbytes());
  }
  t.forward_work = c.forward_flops    ? c.forward_flops(shapes)
                   : output_bytes > 0 ? input_bytes(in) + output_bytes
                                      : 0;
  if (out.values.empty() || differentiated_bytes == 0) return t;

  Inputs<T, D> grad_in = to_inputs<T, D>(h, true);
  Generator gen(seed_of(c.name));
  const Tensor<T, D> cot =
      on_device<D>(Tensor<float>::randn(joined(out.values).shape(), gen).template to<T>());
  Tensor<T, D> graph;
  t.backward_s = seconds_per_call<D>(
      min_time,
      [&] {
        for (auto& x : grad_in.x) x.zero_grad();
        graph = joined(run(grad_in).values);
      },
      [&] { graph.backward(cot); });
  t.backward_work = c.forward_flops ? c.backward_flops_factor * t.forward_work
                                    : bytes_of(out.values) + 2 * differentiated_bytes;
  return t;
}

void print_timing(const Case& c, const char* where, const Timing& t) {
  const char* unit = c.forward_flops ? "GFLOP/s" : "GB/s";
  std::string shape;
  for (const InputSpec& spec : c.inputs) {
    if (spec.kind == InputKind::Mask || spec.kind == InputKind::Index) continue;
    if (!shape.empty()) shape += ' ';
    shape += (spec.has_perf_shape() ? spec.perf_shape : spec.shape).str();
  }
  std::printf("%-40s %-13s fwd %9.3f ms ", c.name.c_str(), where, t.forward_s * 1e3);
  if (t.forward_work > 0)
    std::printf("%8.1f %-7s", t.forward_work / t.forward_s / 1e9, unit);
  else
    std::printf("%-16s", "(views)");
  if (t.backward_s > 0)
    std::printf("  bwd %9.3f ms %8.1f %-7s", t.backward_s * 1e3,
                t.backward_work / t.backward_s / 1e9, unit);
  else
    std::printf("  %-29s", "bwd -");
  std::printf("  %s\n", shape.c_str());
}

// ---- modes ----------------------------------------------------------------------------------

bool selected(const Case& c, const Options& opt) {
  return !opt.without.count(c.op()) && !opt.without.count(c.name) &&
         c.name.find(opt.filter) != std::string::npos;
}

using Parts = std::vector<std::pair<std::string, Outcome>>;  // per label (a device, a type)

// The worst error of a mode (per label) and the case that has it.
struct Worst {
  double forward = 0, gradient = 0;
  std::string forward_case, gradient_case;
};

// Runs `check` (which returns the outcomes of a case, none when the mode does not apply) on every
// selected case, one line per outcome, and a summary; 1 if any case failed.
// `forward`: the mode compares forward values (the gradient mode compares gradients only).
template <class Check>
int run_cases(const Registry& registry, const Options& opt, const char* mode, bool forward,
              Check&& check) {
  int checked = 0, failed = 0, skipped = 0;
  std::map<std::string, Worst> worst;
  for (const Case& c : registry.cases()) {
    if (!selected(c, opt)) continue;
    for (const auto& [label, o] : check(c)) {
      const std::string name = c.name + (label.empty() ? "" : " [" + label + "]");
      if (o.skipped) {
        ++skipped;
        std::printf("  skip %-52s %s\n", name.c_str(), o.note.c_str());
        continue;
      }
      ++checked;
      Worst& w = worst[label];
      if (o.forward > w.forward) w.forward = o.forward, w.forward_case = c.name;
      if (o.gradient > w.gradient) w.gradient = o.gradient, w.gradient_case = c.name;
      const std::string errors = (forward ? "forward " + sci(o.forward) + "  " : std::string()) +
                                 "gradient " + sci(o.gradient);
      std::printf("  %s %-52s %s  %s\n", o.failures.empty() ? "ok  " : "FAIL", name.c_str(),
                  errors.c_str(), o.note.c_str());
      for (const std::string& f : o.failures) std::printf("       %s\n", f.c_str());
      if (!o.failures.empty()) ++failed;
    }
  }
  std::printf("%s: %d checked, %d failed, %d skipped\n", mode, checked, failed, skipped);
  for (const auto& [label, w] : worst) {
    const std::string where = label.empty() ? std::string() : " (" + label + ")";
    if (forward)
      std::printf("%s: worst forward error%s %s (%s)\n", mode, where.c_str(),
                  sci(w.forward).c_str(), w.forward_case.c_str());
    std::printf("%s: worst gradient error%s %s (%s)\n", mode, where.c_str(),
                sci(w.gradient).c_str(), w.gradient_case.c_str());
  }
  return failed > 0 ? 1 : 0;
}

int run_golden(const Registry& registry, const Options& opt) {
  int status = run_cases(registry, opt, "golden", true, [](const Case& c) {
    return c.golden_prefix.empty() ? Parts{} : Parts{{"", guarded([&] { return golden_case(c); })}};
  });
  if (!opt.filter.empty() || !opt.without.empty()) return status;
  // Every golden is read by some case.
  std::set<std::string> stored, read;
  for (const std::string& key : goldens().keys()) stored.insert(key.substr(0, key.find('.')));
  for (const Case& c : registry.cases()) read.insert(c.golden_prefix);
  std::string unread;
  for (const std::string& prefix : stored)
    if (!read.count(prefix)) unread += " " + prefix;
  if (!unread.empty()) {
    std::printf(
        "golden: FAIL: goldens no case reads (register one with .golden(\"<prefix>\")):%s\n",
        unread.c_str());
    status = 1;
  }
  return status;
}

int run_gradient(const Registry& registry, const Options& opt) {
  return run_cases(registry, opt, "gradient", false, [](const Case& c) {
    return Parts{{"", guarded([&] { return gradient_case(c); })}};
  });
}

int run_consistency(const Registry& registry, [[maybe_unused]] const Options& opt) {
#if defined(MENTOR_WITH_CUDA)
  if (!cuda::device_available()) {
    std::printf(
        "consistency: skipped: no CUDA device (or driver) on this machine; %zu cases "
        "registered\n",
        registry.cases().size());
    return 0;
  }
  return run_cases(registry, opt, "consistency", true, [](const Case& c) {
    return Parts{{"cuda float", guarded([&] {
                    return cuda_case<float>(c, c.cuda_float, c.tolerance.cuda_float);
                  })},
                 {"cuda bf16",
                  guarded([&] { return cuda_case<bf16>(c, c.cuda_bf16, c.tolerance.cuda_bf16); })}};
  });
#else
  std::printf(
      "consistency: skipped: this build has no CUDA backend (configure with -DMENTOR_CUDA=ON "
      "where nvcc is present); %zu cases registered\n",
      registry.cases().size());
  return 0;
#endif
}

int run_perf(const Registry& registry, const Options& opt) {
#if defined(MENTOR_WITH_CUDA)
  const bool gpu = cuda::device_available();
#else
  const bool gpu = false;
#endif
  std::printf("%-40s %-13s %-33s  %-29s  %s\n", "case", "where", "forward (recording nothing)",
              "backward (its forward untimed)", "shapes");
  int failed = 0;
  for (const Case& c : registry.cases()) {
    if (!selected(c, opt)) continue;
    if (std::none_of(c.inputs.begin(), c.inputs.end(),
                     [](const InputSpec& s) { return s.has_perf_shape(); }))
      continue;
    try {
      const HostInputs<float> h = generate<float>(c, true);
      print_timing(c, "cpu float", time_case<float, CPU>(c, c.cpu_float, h, opt.min_time));
#if defined(MENTOR_WITH_CUDA)
      if (gpu) {
        print_timing(c, "cuda float", time_case<float, CUDA>(c, c.cuda_float, h, opt.min_time));
        print_timing(c, "cuda bf16", time_case<bf16, CUDA>(c, c.cuda_bf16, h, opt.min_time));
      }
#endif
    } catch (const std::exception& e) {
      std::printf("%-40s FAIL: threw: %s\n", c.name.c_str(), e.what());
      ++failed;
    }
  }
  if (!gpu) std::printf("perf: CPU only (no CUDA device or no CUDA backend in this build)\n");
  return failed > 0 ? 1 : 0;
}

int run_list(const Registry& registry, const Options& opt) {
  std::set<std::string> ops;
  for (const Case& c : registry.cases()) {
    if (!selected(c, opt)) continue;
    if (!opt.list_cases) {
      ops.insert(c.op());
      continue;
    }
    std::string inputs;
    for (const InputSpec& spec : c.inputs) inputs += " " + spec.name + spec.shape.str();
    std::printf("%-40s golden %-20s inputs%s\n", c.name.c_str(),
                c.golden_prefix.empty() ? "-" : c.golden_prefix.c_str(), inputs.c_str());
  }
  for (const std::string& op : ops) std::printf("%s\n", op.c_str());
  return 0;
}

int run_coverage(const Registry& registry, const Options& opt) {
  std::set<std::string> exported, covered;
  for (std::string line; std::getline(std::cin, line);)
    if (!line.empty()) exported.insert(line);
  if (exported.empty()) {
    std::fprintf(stderr,
                 "coverage: no exported op names on stdin (tools/check-op-cases.sh "
                 "sends them)\n");
    return 2;
  }
  for (const Case& c : registry.cases())
    if (selected(c, opt)) covered.insert(c.op());
  std::string missing, unknown;
  size_t with_cases = 0;
  for (const std::string& op : exported) {
    if (covered.count(op))
      ++with_cases;
    else
      missing += " " + op;
  }
  for (const std::string& op : covered)
    if (!exported.count(op)) unknown += " " + op;
  std::printf("coverage: %zu exported ops, %zu with cases\n", exported.size(), with_cases);
  if (!missing.empty())
    std::printf(
        "coverage: FAIL: exported ops without a case (register one in tests/op_cases/):%s\n",
        missing.c_str());
  if (!unknown.empty())
    std::printf("coverage: FAIL: cases of ops that mentor/ops does not export:%s\n",
                unknown.c_str());
  return missing.empty() && unknown.empty() ? 0 : 1;
}

int usage(const char* why) {
  std::fprintf(stderr,
               "op_cases: %s\n"
               "usage: op_cases list|coverage|golden|gradient|consistency|perf [--filter TEXT] "
               "[--without NAME]... [--cases] [--min-time SECONDS]\n",
               why);
  return 2;
}

}  // namespace

int run(int argc, char** argv, void (*register_cases)(Registry&)) {
  if (argc < 2) return usage("no mode given");
  Options opt;
  opt.mode = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--filter" && has_value)
      opt.filter = argv[++i];
    else if (arg == "--without" && has_value)
      opt.without.insert(argv[++i]);
    else if (arg == "--min-time" && has_value)
      opt.min_time = std::stod(argv[++i]);
    else if (arg == "--cases")
      opt.list_cases = true;
    else
      return usage(("unknown argument " + arg).c_str());
  }

  Registry registry;
  register_cases(registry);
  std::set<std::string> names;
  for (const Case& c : registry.cases())
    if (!names.insert(c.name).second) return usage(("two cases are named " + c.name).c_str());

  if (opt.mode == "list") return run_list(registry, opt);
  if (opt.mode == "coverage") return run_coverage(registry, opt);
  if (opt.mode == "golden") return run_golden(registry, opt);
  if (opt.mode == "gradient") return run_gradient(registry, opt);
  if (opt.mode == "consistency") return run_consistency(registry, opt);
  if (opt.mode == "perf") return run_perf(registry, opt);
  return usage(("unknown mode " + opt.mode).c_str());
}

}  // namespace mentor::op_cases
