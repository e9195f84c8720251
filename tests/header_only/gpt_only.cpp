// A translation unit that uses the decoder through its own header only; the header-dependency
// test (tests/CMakeLists.txt) checks that compiling it pulls in no VQ, CLIP or T5 header.
#include "mentor/models/gpt.hpp"

int main() {
  mentor::models::GPTConfig config = mentor::models::GPTConfig::preset("GPT-B");
  return config.dim == 768 ? 0 : 1;
}
