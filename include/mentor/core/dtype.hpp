#pragma once
// Element types mentor tensors may hold, and their traits. The set is closed on purpose: every
// op and backend instantiates exactly these.
#include <cstdint>
#include <string_view>
#include <type_traits>

#include "mentor/core/bf16.hpp"

namespace mentor {

enum class DType : uint8_t { F32, F64, BF16, I32, I64, U8, Bool };

template <class T>
inline constexpr bool is_element_v =
    std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, bf16> ||
    std::is_same_v<T, int32_t> || std::is_same_v<T, int64_t> || std::is_same_v<T, uint8_t> ||
    std::is_same_v<T, bool>;

template <class T>
concept Element = is_element_v<T>;

// Floating element types: the ones that can carry gradients.
template <class T>
inline constexpr bool is_floating_v =
    std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, bf16>;

template <class T>
concept FloatingElement = is_floating_v<T>;

template <class T>
concept IndexElement = std::is_same_v<T, int32_t> || std::is_same_v<T, int64_t>;

// The type arithmetic on T is carried out in: float for bf16 (bf16 storage, float accumulation).
template <class T>
struct accumulate_type {
  using type = T;
};
template <>
struct accumulate_type<bf16> {
  using type = float;
};
template <class T>
using acc_t = typename accumulate_type<T>::type;

template <class T>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, float>) return DType::F32;
  else if constexpr (std::is_same_v<T, double>) return DType::F64;
  else if constexpr (std::is_same_v<T, bf16>) return DType::BF16;
  else if constexpr (std::is_same_v<T, int32_t>) return DType::I32;
  else if constexpr (std::is_same_v<T, int64_t>) return DType::I64;
  else if constexpr (std::is_same_v<T, uint8_t>) return DType::U8;
  else {
    static_assert(std::is_same_v<T, bool>, "not a mentor element type");
    return DType::Bool;
  }
}

constexpr std::string_view dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32: return "float32";
    case DType::F64: return "float64";
    case DType::BF16: return "bfloat16";
    case DType::I32: return "int32";
    case DType::I64: return "int64";
    case DType::U8: return "uint8";
    case DType::Bool: return "bool";
  }
  return "?";
}

template <class T>
constexpr std::string_view dtype_name() {
  return dtype_name(dtype_of<T>());
}

// Converting between element types: through float for bf16, a plain cast otherwise.
template <class To, class From>
MENTOR_HD inline To convert_element(From value) {
  if constexpr (std::is_same_v<To, From>) {
    return value;
  } else if constexpr (std::is_same_v<To, bf16>) {
    return bf16(static_cast<float>(value));
  } else if constexpr (std::is_same_v<From, bf16>) {
    return static_cast<To>(static_cast<float>(value));
  } else {
    return static_cast<To>(value);
  }
}

}  // namespace mentor
