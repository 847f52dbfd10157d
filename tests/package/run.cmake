# Builds and runs consumer projects against this build:
#  1. install this build tree (the default: static, libpq from FindPostgreSQL) into a prefix,
#     then find_package(steadypg) from it, and link a program with nothing but
#     `pkg-config --cflags --libs steadypg`;
#  2. a second, library-only build with FindPostgreSQL disabled (libpq from pkg-config), shared
#     and without steadypg::testing: install it, then find_package(steadypg) from it (the
#     config must recreate PkgConfig::STEADYPG_LIBPQ) and pkg-config it (Requires.private);
#  3. add_subdirectory(<source>) from a fresh project.
# Inputs: SOURCE_DIR, BUILD_DIR, WORK_DIR, GENERATOR.

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

# Compiles and links WORK_DIR/pc_consumer.cpp into EXE with the flags of `pkg-config --cflags
# --libs steadypg` from PC_DIR and nothing else (the standard is the consumer's own choice).
function(pkg_config_consumer pc_dir exe)
  set(ENV{PKG_CONFIG_PATH} ${pc_dir})
  run(pkg-config --exists --print-errors steadypg)
  run(pkg-config --cflags --libs steadypg)
  string(STRIP "${last_output}" pc_flags)
  if(pc_flags MATCHES "-std=")
    message(FATAL_ERROR "steadypg.pc imposes a language standard on its consumers: ${pc_flags}")
  endif()
  separate_arguments(pc_flags UNIX_COMMAND "${pc_flags}")
  run(c++ -std=c++20 ${WORK_DIR}/pc_consumer.cpp -o ${exe} ${pc_flags})
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
file(WRITE ${WORK_DIR}/pc_consumer.cpp "#include <steadypg/steadypg.hpp>\n#include <iostream>\n"
     "int main() { std::cout << steadypg::redact_dsn(\"password=x\") << std::endl; }\n")

# 1. The default build.
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})

run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/package/find_package -B ${WORK_DIR}/find_package -G ${GENERATOR}
    -DCMAKE_PREFIX_PATH=${prefix})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/find_package -j 2)
run(${WORK_DIR}/find_package/consumer)
message(STATUS "find_package consumer: ${last_output}")

# The library is a static archive: its .pc lists libpq and fmt under Requires, so the plain
# `--libs` links them (Debian's libpq.pc lists static-only dependencies, so `--static` would
# need LDAP/GSSAPI dev packages).
file(GLOB_RECURSE pc_file ${prefix}/*/steadypg.pc)
get_filename_component(pc_dir "${pc_file}" DIRECTORY)
pkg_config_consumer(${pc_dir} ${WORK_DIR}/pc_consumer)
run(${WORK_DIR}/pc_consumer)
message(STATUS "pkg-config consumer: ${last_output}")

# 2. libpq from pkg-config, shared, no steadypg::testing (so no CLI either).
set(fb_build ${WORK_DIR}/fallback-build)
set(fb_prefix ${WORK_DIR}/fallback-prefix)
run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${fb_build} -G ${GENERATOR}
    -DCMAKE_DISABLE_FIND_PACKAGE_PostgreSQL=ON -DBUILD_SHARED_LIBS=ON -DSTEADYPG_INSTALL=ON
    -DSTEADYPG_BUILD_TESTING_LIB=OFF -DSTEADYPG_BUILD_TESTS=OFF -DSTEADYPG_BUILD_EXAMPLES=OFF
    -DSTEADYPG_BUILD_BENCH=OFF)
run(${CMAKE_COMMAND} --build ${fb_build} -j 2)
run(${CMAKE_COMMAND} --install ${fb_build} --prefix ${fb_prefix})
file(GLOB_RECURSE fb_targets ${fb_prefix}/*/steadypg-targets.cmake)
file(READ "${fb_targets}" fb_targets_text)
if(NOT fb_targets_text MATCHES "PkgConfig::STEADYPG_LIBPQ")
  message(FATAL_ERROR "the fallback build did not use pkg-config's libpq (${fb_targets})")
endif()
if(EXISTS ${fb_prefix}/include/steadypg/testing)
  message(FATAL_ERROR "include/steadypg/testing/ was installed without steadypg_testing")
endif()
if(NOT EXISTS ${fb_prefix}/include/steadypg/steadypg.hpp)
  message(FATAL_ERROR "the public headers were not installed with steadypg")
endif()

file(WRITE ${WORK_DIR}/fallback_consumer/CMakeLists.txt [=[
cmake_minimum_required(VERSION 3.25)
project(steadypg_fallback_consumer LANGUAGES CXX)
find_package(steadypg 0.1 REQUIRED)
if(TARGET steadypg::testing)
  message(FATAL_ERROR "steadypg::testing exists, though it was not built")
endif()
add_executable(consumer ../pc_consumer.cpp)
target_compile_features(consumer PRIVATE cxx_std_20)
target_link_libraries(consumer PRIVATE steadypg::steadypg)
]=])
# FindPostgreSQL stays disabled here too: the config must not need it.
run(${CMAKE_COMMAND} -S ${WORK_DIR}/fallback_consumer -B ${WORK_DIR}/fallback_consumer/build -G ${GENERATOR}
    -DCMAKE_PREFIX_PATH=${fb_prefix} -DCMAKE_DISABLE_FIND_PACKAGE_PostgreSQL=ON)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/fallback_consumer/build -j 2)
run(${WORK_DIR}/fallback_consumer/build/consumer)
message(STATUS "find_package consumer (libpq from pkg-config, shared): ${last_output}")

file(GLOB_RECURSE pc_file ${fb_prefix}/*/steadypg.pc)
get_filename_component(pc_dir "${pc_file}" DIRECTORY)
get_filename_component(fb_libdir "${pc_dir}" DIRECTORY)
pkg_config_consumer(${pc_dir} ${WORK_DIR}/pc_consumer_shared)
run(${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${fb_libdir} ${WORK_DIR}/pc_consumer_shared)
message(STATUS "pkg-config consumer (shared): ${last_output}")

# 3. add_subdirectory consumer
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/package/add_subdirectory -B ${WORK_DIR}/add_subdirectory -G ${GENERATOR}
    -DSTEADYPG_SOURCE_DIR=${SOURCE_DIR})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/add_subdirectory -j 2)
run(${WORK_DIR}/add_subdirectory/consumer)
message(STATUS "add_subdirectory consumer: ${last_output}")
