#pragma once
// Attention and padding masks built on the host from per-token validity (bool tensors, true = a
// real token): the decoder's causal mask over a left-padded condition prefix, the plan that
// left-pads a condition into its slots, and an encoder's additive padding bias. The models move
// them to their device and apply them with ops.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "mentor/core/error.hpp"
#include "mentor/core/tensor.hpp"

namespace mentor::data {

// Rows [first_row, first_row + rows) of the decoder's attention mask over a left-padded condition
// prefix emb_mask [B, T] followed by image tokens: [B, 1, rows, first_row + rows] (true = attend),
// causal, the columns of padded prefix slots off for every row and the diagonal on (so padded rows
// attend to themselves), as MENTOR's Transformer.forward builds it. A sequence of S positions
// takes rows [0, S); a KV-cached step at position p takes row p alone.
inline Tensor<bool, CPU> condition_attention_rows(const Tensor<bool, CPU>& emb_mask,
                                                  int64_t first_row, int64_t rows) {
  MENTOR_CHECK_SHAPE(emb_mask.dim() == 2, "condition_attention_rows: emb_mask ",
                     emb_mask.shape().str(), " is not [B, T]");
  MENTOR_CHECK(first_row >= 0 && rows >= 0, "condition_attention_rows: rows [", first_row, ", ",
               first_row + rows, ") are not a range of positions");
  const int64_t batch = emb_mask.size(0), prefix = emb_mask.size(1), columns = first_row + rows;
  const std::vector<bool> valid = emb_mask.to_vector();
  std::vector<bool> m(static_cast<size_t>(batch * rows * columns), false);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = first_row + r;
      for (int64_t j = 0; j <= i; ++j) {
        const bool column_on = j >= prefix || valid[static_cast<size_t>(b * prefix + j)];
        m[static_cast<size_t>((b * rows + r) * columns + j)] = column_on || i == j;
      }
    }
  return Tensor<bool, CPU>::from_vector(m, Shape{batch, 1, rows, columns});
}

// The decoder's training mask for a left-padded prefix emb_mask [B, T] followed by image_tokens
// positions: all rows of condition_attention_rows, [B, 1, S, S] with S = T + image_tokens (MENTOR's
// [:-1, :-1] cut of the T + block_size mask).
template <class D>
Tensor<bool, D> condition_attention_mask(const Tensor<bool, D>& emb_mask, int64_t image_tokens) {
  MENTOR_CHECK_SHAPE(emb_mask.dim() == 2, "condition_attention_mask: emb_mask ",
                     emb_mask.shape().str(), " is not [B, T]");
  MENTOR_CHECK(image_tokens >= 0, "condition_attention_mask: image_tokens ", image_tokens,
               " is negative");
  const int64_t seq = emb_mask.size(1) + image_tokens;
  return condition_attention_rows(emb_mask.template to<CPU>(), 0, seq).template to<D>();
}

// Where each slot of a left-padded condition takes its row from: sample b's valid rows of
// valid [B, L], in order, fill its last n_b = min(valid count, slots) slots (upstream keeps the
// first `slots` when there are more); the other slots take row B * L, a zero row placed after the
// B * L rows of the flattened condition.
struct LeftPadding {
  Tensor<int64_t, CPU> source_rows;  // [B * slots]: b * L + t, or B * L for a padded slot
  Tensor<bool, CPU> mask;            // [B, slots]: true for the filled slots (upstream emb_mask)
};

inline LeftPadding left_padding(const Tensor<bool, CPU>& valid, int64_t slots) {
  MENTOR_CHECK_SHAPE(valid.dim() == 2, "left_padding: valid ", valid.shape().str(),
                     " is not [B, L]");
  MENTOR_CHECK(slots > 0, "left_padding: slots ", slots, " must be positive");
  const int64_t batch = valid.size(0), length = valid.size(1);
  const std::vector<bool> flags = valid.to_vector();
  const int64_t zero_row = batch * length;
  std::vector<int64_t> source(static_cast<size_t>(batch * slots), zero_row);
  std::vector<bool> mask(static_cast<size_t>(batch * slots), false);
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<int64_t> rows;
    for (int64_t t = 0; t < length; ++t)
      if (flags[static_cast<size_t>(b * length + t)]) rows.push_back(b * length + t);
    const int64_t n = std::min<int64_t>(static_cast<int64_t>(rows.size()), slots);
    for (int64_t i = 0; i < n; ++i) {
      const auto slot = static_cast<size_t>(b * slots + slots - n + i);
      source[slot] = rows[static_cast<size_t>(i)];
      mask[slot] = true;
    }
  }
  return {Tensor<int64_t, CPU>::from_vector(source, Shape{batch * slots}),
          Tensor<bool, CPU>::from_vector(mask, Shape{batch, slots})};
}

// The additive attention bias of a padding mask keep [B, S] (true = a real token), same shape: 0
// for real keys, -1e30 for padded ones (HF adds the dtype's minimum: the same zero weight).
template <class T>
Tensor<T, CPU> additive_padding_mask(const Tensor<bool, CPU>& keep) {
  const std::vector<bool> flags = keep.to_vector();
  std::vector<T> additive(flags.size());
  for (size_t i = 0; i < flags.size(); ++i)
    additive[i] = convert_element<T>(flags[i] ? 0.0 : -1e30);
  // Built from the mask's own shape: GCC 12 at -O3 flags a fresh Shape{...} here as
  // maybe-uninitialized.
  return Tensor<T, CPU>::from_vector(additive, keep.shape());
}

}  // namespace mentor::data
