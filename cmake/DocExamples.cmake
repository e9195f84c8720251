# Turns every ```cpp block of the given Markdown files into a function of one C++ program, so the
# examples in docs/ are compiled and run by the tests. Usage (script mode):
#   cmake -DOUTPUT=file.cpp -DINPUTS="a.md;b.md" -P DocExamples.cmake
set(body "// Generated from docs/*.md by cmake/DocExamples.cmake: do not edit.\n#include <cassert>\n#include <iostream>\n#include <string>\n#include <mentor/mentor.hpp>\n\n")
set(calls "")
set(index 0)
foreach(md ${INPUTS})
  file(READ ${md} text)
  string(REGEX MATCHALL "```cpp\n[^`]*```" blocks "${text}")
  foreach(block ${blocks})
    string(REGEX REPLACE "^```cpp\n" "" code "${block}")
    string(REGEX REPLACE "```$" "" code "${code}")
    if(code MATCHES "#include")
      continue()  # include-only snippets are illustrations of set-up, not runnable code
    endif()
    get_filename_component(name ${md} NAME_WE)
    string(APPEND body "// ${name}.md, example ${index}\nstatic void doc_example_${index}() {\n${code}}\n\n")
    string(APPEND calls "  doc_example_${index}();\n")
    math(EXPR index "${index} + 1")
  endforeach()
endforeach()
string(APPEND body "int main() {\n${calls}  std::cout << \"${index} documentation examples ran\\n\";\n  return 0;\n}\n")
file(WRITE ${OUTPUT}.tmp "${body}")
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different ${OUTPUT}.tmp ${OUTPUT})
