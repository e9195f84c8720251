# Writes every block of a Markdown file whose info string names a file (```cpp file=NAME or
# ```cuda file=NAME) to OUTPUT_DIR/NAME, so a walkthrough's code is compiled and run by the tests
# exactly as the reader sees it. A file is rewritten only when its text changed.
# Usage (script mode): cmake -DINPUT=doc.md -DOUTPUT_DIR=dir -P DocFiles.cmake
file(READ ${INPUT} text)
string(REPLACE ";" "@SEMICOLON@" text "${text}")  # CMake lists split on ';'
string(REGEX MATCHALL "```[a-z]+ file=[A-Za-z0-9_.]+\n[^`]*```" blocks "${text}")
if(NOT blocks)
  message(FATAL_ERROR "${INPUT}: no ```<lang> file=NAME blocks")
endif()
file(MAKE_DIRECTORY ${OUTPUT_DIR})
foreach(block ${blocks})
  string(REGEX MATCH "file=[A-Za-z0-9_.]+" name "${block}")
  string(REGEX REPLACE "^file=" "" name "${name}")
  string(REGEX REPLACE "^```[a-z]+ file=[A-Za-z0-9_.]+\n" "" code "${block}")
  string(REGEX REPLACE "```$" "" code "${code}")
  string(REPLACE "@SEMICOLON@" ";" code "${code}")
  file(WRITE ${OUTPUT_DIR}/${name}.tmp "// Generated from ${INPUT} by cmake/DocFiles.cmake: do not edit.\n${code}")
  execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different ${OUTPUT_DIR}/${name}.tmp
                          ${OUTPUT_DIR}/${name})
  file(REMOVE ${OUTPUT_DIR}/${name}.tmp)
endforeach()
