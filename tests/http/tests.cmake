# Included from tests/CMakeLists.txt when steadypg::http is built.
add_executable(steadypg_http_tests ${CMAKE_CURRENT_SOURCE_DIR}/http/http_test.cpp)
target_link_libraries(steadypg_http_tests PRIVATE steadypg_http steadypg_testing GTest::gtest_main fmt::fmt
                                                  nlohmann_json::nlohmann_json)
# The endpoint's pure logic (src/http/negotiate.hpp, sampler.hpp) is tested white-box.
target_include_directories(steadypg_http_tests PRIVATE ${PROJECT_SOURCE_DIR}/src/http)
steadypg_warnings(steadypg_http_tests)
add_test(NAME steadypg_http_tests COMMAND steadypg_http_tests --gtest_brief=1)
set_tests_properties(steadypg_http_tests PROPERTIES LABELS http TIMEOUT 300)
