#pragma once
// Errors: every failure mentor reports is a mentor::Error (or a subclass) whose message names the
// problem: the op, the file, the key, both shapes, the bad value.
#include <sstream>
#include <stdexcept>
#include <string>

namespace mentor {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A shape mismatch; the message names the op and both shapes.
class ShapeError : public Error {
 public:
  using Error::Error;
};

// Device memory exhausted; the message gives the bytes asked for and the bytes free.
class OutOfMemoryError : public Error {
 public:
  using Error::Error;
};

namespace detail {
template <class... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
}
}  // namespace detail

}  // namespace mentor

// MENTOR_CHECK(cond, parts...): throw mentor::Error built from the streamed parts when cond fails.
#define MENTOR_CHECK(cond, ...) \
  do {                          \
    if (!(cond)) [[unlikely]]   \
      throw ::mentor::Error(::mentor::detail::concat(__VA_ARGS__)); \
  } while (0)

#define MENTOR_CHECK_SHAPE(cond, ...) \
  do {                                \
    if (!(cond)) [[unlikely]]         \
      throw ::mentor::ShapeError(::mentor::detail::concat(__VA_ARGS__)); \
  } while (0)
