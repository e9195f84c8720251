# Fails when compiling SOURCE includes any header matching FORBIDDEN (a '|'-separated list).
execute_process(COMMAND ${CXX} -std=c++20 -fopenmp -M -I${INCLUDE} -I${EIGEN} -I/usr/include/eigen3 ${SOURCE}
  OUTPUT_VARIABLE deps RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "could not list the dependencies of ${SOURCE}: ${err}")
endif()
string(REPLACE "|" ";" forbidden "${FORBIDDEN}")
foreach(name ${forbidden})
  string(FIND "${deps}" "/${name}" at)
  if(NOT at EQUAL -1)
    message(FATAL_ERROR "${SOURCE} pulls in ${name}")
  endif()
endforeach()
message(STATUS "${SOURCE}: no forbidden header among its dependencies")
