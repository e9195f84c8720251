// The sanitizer stage's canary (tools/sanitize.sh): built with the same flags as the tests, it must
// fail, once with ASan's report and once with UBSan's, or the stage would pass without sanitizers.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  volatile int index = 4;
  if (std::strcmp(argv[1], "heap-overflow") == 0) {
    std::vector<int> values(4, 1);
    const int* data = values.data();
    std::printf("%d\n", data[index]);  // one past the end of the heap block
  } else if (std::strcmp(argv[1], "signed-overflow") == 0) {
    volatile int big = std::numeric_limits<int>::max();
    std::printf("%d\n", big + index);
  } else {
    return 2;
  }
  return 0;
}
