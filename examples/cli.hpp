#pragma once
// The end of every example program's main(): CLI11 parses the options (a bad one gets CLI11's own
// message and status), then `run()` does the work; an exception becomes "<program>: error: <what>"
// on stderr and exit status 1.
#include <CLI/CLI.hpp>
#include <exception>
#include <iostream>
#include <utility>

namespace mentor::examples {

template <class Run>
int parse_and_run(CLI::App& app, int argc, char** argv, const char* program, Run&& run) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    return std::forward<Run>(run)();
  } catch (const std::exception& e) {
    std::cerr << program << ": error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace mentor::examples
