# Included from tests/CMakeLists.txt when steadypg::http is built.
add_executable(steadypg_http_tests ${CMAKE_CURRENT_SOURCE_DIR}/http/http_test.cpp)
target_link_libraries(steadypg_http_tests PRIVATE steadypg_http steadypg_testing GTest::gtest_main fmt::fmt
                                                  nlohmann_json::nlohmann_json)
# The endpoint's pure logic (src/http/negotiate.hpp, sampler.hpp) is tested white-box.
target_include_directories(steadypg_http_tests PRIVATE ${PROJECT_SOURCE_DIR}/src/http)
steadypg_warnings(steadypg_http_tests)
add_test(NAME steadypg_http_tests COMMAND steadypg_http_tests --gtest_brief=1)
set_tests_properties(steadypg_http_tests PROPERTIES LABELS http TIMEOUT 300)

# A real Prometheus scraping the endpoint (label monitor: the debug pass only).
add_executable(steadypg_prometheus_tests ${CMAKE_CURRENT_SOURCE_DIR}/http/prometheus_test.cpp)
target_link_libraries(steadypg_prometheus_tests PRIVATE steadypg_http steadypg_testing GTest::gtest_main fmt::fmt
                                                        nlohmann_json::nlohmann_json)
steadypg_warnings(steadypg_prometheus_tests)
add_test(NAME steadypg_prometheus_tests COMMAND steadypg_prometheus_tests --gtest_brief=1)
set_tests_properties(steadypg_prometheus_tests PROPERTIES LABELS monitor TIMEOUT 120)

# The shipped alert rules: valid, and doing what their tests say.
find_program(STEADYPG_PROMTOOL promtool)
if(STEADYPG_PROMTOOL)
  add_test(NAME steadypg_alert_rules COMMAND ${STEADYPG_PROMTOOL} test rules steadypg-alerts.test.yml
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}/deploy/prometheus)
  set_tests_properties(steadypg_alert_rules PROPERTIES LABELS unit TIMEOUT 60)
endif()

# The dashboard page in Debian's headless Chromium via playwright-core (tests/browser; npm ci
# by scripts/deps.sh). Label monitor: the debug pass only.
add_executable(steadypg_browser_tests ${PROJECT_SOURCE_DIR}/tests/browser/browser_test.cpp)
target_link_libraries(steadypg_browser_tests PRIVATE steadypg_http steadypg_testing GTest::gtest_main fmt::fmt)
target_compile_definitions(steadypg_browser_tests PRIVATE STEADYPG_BROWSER_DIR="${PROJECT_SOURCE_DIR}/tests/browser"
                                                          STEADYPG_SCREENSHOT_DIR="${PROJECT_BINARY_DIR}/screenshots")
steadypg_warnings(steadypg_browser_tests)
add_test(NAME steadypg_browser_tests COMMAND steadypg_browser_tests --gtest_brief=1)
set_tests_properties(steadypg_browser_tests PROPERTIES LABELS monitor TIMEOUT 180)

# The CLI's monitor command and --http flag.
if(STEADYPG_BUILD_CLI)
  add_executable(steadypg_cli_monitor_tests ${CMAKE_CURRENT_SOURCE_DIR}/http/cli_monitor_test.cpp)
  target_link_libraries(steadypg_cli_monitor_tests PRIVATE steadypg_testing GTest::gtest_main fmt::fmt
                                                           nlohmann_json::nlohmann_json)
  target_compile_definitions(steadypg_cli_monitor_tests PRIVATE STEADYPG_CLI_PATH="$<TARGET_FILE:steadypg_cli>")
  add_dependencies(steadypg_cli_monitor_tests steadypg_cli)
  steadypg_warnings(steadypg_cli_monitor_tests)
  add_test(NAME steadypg_cli_monitor_tests COMMAND steadypg_cli_monitor_tests --gtest_brief=1)
  set_tests_properties(steadypg_cli_monitor_tests PROPERTIES LABELS http TIMEOUT 120)
endif()
