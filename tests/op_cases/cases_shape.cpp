// Op cases of the joining, splitting and indexing ops.
#include "mentor/ops/shape_ops.hpp"
#include "registry.hpp"

namespace mentor::op_cases {

void register_shape_cases(Registry& r) {
  r.add("concat",
        {values("a", {2, 3, 4}).perf({8, 1024, 512}), values("b", {2, 2, 4}).perf({8, 1024, 512})},
        [](const auto& in) {
          return concat(std::vector{in[0], in[1]}, 1);
        })
      .golden("concat_dim1");
  // Three parts, one a transposed view (a strided copy), along a middle dimension.
  r.add("concat.three_strided",
        {values("a", {2, 3, 4}), values("b", {2, 1, 4}), values("c", {4, 2, 2})},
        [](const auto& in) {
          return concat(std::vector{in[0], in[1], in[2].transpose(0, 2)}, 1);
        });
  r.add("stack", {values("a", {3, 4}).perf({2048, 2048}), values("b", {3, 4}).perf({2048, 2048})},
        [](const auto& in) {
          return stack(std::vector{in[0], in[1]}, 2);
        });
  // Views: their gradients meet in the input.
  r.add("split", {values("x", {6, 10}).perf({4096, 2048})}, [](const auto& in) {
    const int64_t n = in[0].size(-1);
    return split(in[0], {n / 4, n / 4, n - 2 * (n / 4)}, -1);
  });
  r.add("chunk", {values("x", {2, 6}).perf({4096, 2048})}, [](const auto& in) {
     return chunk(in[0], 3, -1);
   }).golden("chunk_last");
  r.add("index_select",
        {values("x", {5, 3}).perf({16384, 512}), indices("ids", {3}, 5).perf({8192}, 16384)},
        [](const auto& in) { return index_select(in[0], 0, in.ids[0]); })
      .golden("index_select_dim0");
  // A middle dimension, with repeated indices (their gradients add up).
  r.add("index_select.middle_dim", {values("x", {3, 6, 5}), indices("ids", {7}, 6)},
        [](const auto& in) { return index_select(in[0], 1, in.ids[0]); });
  r.add(
       "gather",
       {values("x", {3, 5}).perf({2048, 4096}), indices("ids", {3, 2}, 5).perf({2048, 1024}, 4096)},
       [](const auto& in) { return gather(in[0], -1, in.ids[0]); })
      .golden("gather_last");
  r.add("where",
        {values("a", {3, 4}).perf({2048, 4096}), values("b", {3, 4}).perf({2048, 4096}),
         mask("cond", {3, 4}).perf({2048, 4096})},
        [](const auto& in) { return where(in.masks[0], in[0], in[1]); })
      .golden("where");
  r.add("where.broadcast", {values("a", {4, 9}), values("b", {9}), mask("cond", {4, 1})},
        [](const auto& in) { return where(in.masks[0], in[0], in[1]); });
  r.add("masked_fill",
        {values("x", {4, 5}).perf({2048, 4096}), mask("mask", {1, 5}).perf({1, 4096})},
        [](const auto& in) { return masked_fill(in[0], in.masks[0], -7.5); })
      .golden("masked_fill");
}

}  // namespace mentor::op_cases
