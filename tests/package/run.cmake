# Builds and runs the two consumer projects against this build:
#  1. install this build tree into a prefix, then find_package(steadypg) from it (and check
#     the pkg-config file);
#  2. add_subdirectory(<source>) from a fresh project.
# Inputs: SOURCE_DIR, BUILD_DIR, WORK_DIR, GENERATOR.

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)

run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})

# find_package consumer
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/package/find_package -B ${WORK_DIR}/find_package -G ${GENERATOR}
    -DCMAKE_PREFIX_PATH=${prefix})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/find_package -j 2)
run(${WORK_DIR}/find_package/consumer)
message(STATUS "find_package consumer: ${last_output}")

# pkg-config file
file(GLOB_RECURSE pc_file ${prefix}/*/steadypg.pc)
get_filename_component(pc_dir "${pc_file}" DIRECTORY)
set(ENV{PKG_CONFIG_PATH} ${pc_dir})
run(pkg-config --exists --print-errors steadypg)
# The library is a static archive: its Requires.private (libpq, fmt) are linked too. (Debian's
# libpq.pc lists static-only dependencies, so `--static` itself needs LDAP/GSSAPI dev packages.)
run(pkg-config --cflags --libs steadypg)
string(STRIP "${last_output}" pc_flags)
run(pkg-config --libs libpq fmt)
string(STRIP "${last_output}" dep_flags)
string(APPEND pc_flags " ${dep_flags}")
separate_arguments(pc_flags UNIX_COMMAND "${pc_flags}")
# Compile and link a consumer with nothing but the pkg-config flags.
file(WRITE ${WORK_DIR}/pc_consumer.cpp "#include <steadypg/steadypg.hpp>\n#include <iostream>\n"
     "int main() { std::cout << steadypg::redact_dsn(\"password=x\") << std::endl; }\n")
run(c++ ${WORK_DIR}/pc_consumer.cpp -o ${WORK_DIR}/pc_consumer ${pc_flags})
run(${WORK_DIR}/pc_consumer)
message(STATUS "pkg-config consumer: ${last_output}")

# add_subdirectory consumer
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/package/add_subdirectory -B ${WORK_DIR}/add_subdirectory -G ${GENERATOR}
    -DSTEADYPG_SOURCE_DIR=${SOURCE_DIR})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/add_subdirectory -j 2)
run(${WORK_DIR}/add_subdirectory/consumer)
message(STATUS "add_subdirectory consumer: ${last_output}")
