# steadypg::http (steadypg_http): the optional monitoring endpoint on Debian's cpp-httplib
# (docs/monitoring.md). A target of its own, so that steadypg itself links only libpq and fmt.
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(STEADYPG_HTTPLIB QUIET IMPORTED_TARGET cpp-httplib)
endif()
find_package(nlohmann_json QUIET)
set(_steadypg_http_default OFF)
if(PROJECT_IS_TOP_LEVEL AND STEADYPG_HTTPLIB_FOUND AND nlohmann_json_FOUND)
  set(_steadypg_http_default ON)
endif()
option(STEADYPG_BUILD_HTTP "Build steadypg::http, the monitoring endpoint (needs cpp-httplib and nlohmann-json)"
       ${_steadypg_http_default})

if(STEADYPG_BUILD_HTTP)
  if(NOT STEADYPG_HTTPLIB_FOUND)
    message(FATAL_ERROR "STEADYPG_BUILD_HTTP needs cpp-httplib (Debian: libcpp-httplib-dev; pkg-config cpp-httplib)")
  endif()
  if(NOT nlohmann_json_FOUND)
    message(FATAL_ERROR "STEADYPG_BUILD_HTTP needs nlohmann-json (Debian: nlohmann-json3-dev)")
  endif()
  # The page is embedded at build time, so the library serves it without any file beside it.
  set(_page ${CMAKE_CURRENT_SOURCE_DIR}/src/http/dashboard.html)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_page})
  file(READ ${_page} _page_text)
  if(_page_text MATCHES "\\)steadypg_page\"")
    message(FATAL_ERROR "src/http/dashboard.html contains the raw-string delimiter )steadypg_page\"")
  endif()
  set(_page_cpp ${PROJECT_BINARY_DIR}/generated/dashboard_page.cpp)
  file(WRITE ${_page_cpp}.tmp
       "// Generated from src/http/dashboard.html.\n#include \"dashboard.hpp\"\n"
       "namespace steadypg::http::internal {\nstd::string_view dashboard_page() noexcept {\n"
       "  static constexpr std::string_view page = R\"steadypg_page(${_page_text})steadypg_page\";\n"
       "  return page;\n}\n}  // namespace steadypg::http::internal\n")
  configure_file(${_page_cpp}.tmp ${_page_cpp} COPYONLY)

  add_library(steadypg_http src/http/server.cpp src/http/sampler.cpp src/http/report_json.cpp src/http/negotiate.cpp
                            ${_page_cpp})
  add_library(steadypg::http ALIAS steadypg_http)
  target_sources(steadypg_http PUBLIC FILE_SET HEADERS BASE_DIRS include FILES include/steadypg/http/server.hpp
                                                                            include/steadypg/http/report_json.hpp)
  target_include_directories(steadypg_http PRIVATE src/http)
  # nlohmann-json is header-only and used inside the library only: its include directory, no link dependency.
  target_include_directories(steadypg_http SYSTEM PRIVATE
                             $<TARGET_PROPERTY:nlohmann_json::nlohmann_json,INTERFACE_INCLUDE_DIRECTORIES>)
  target_link_libraries(steadypg_http PUBLIC steadypg PRIVATE PkgConfig::STEADYPG_HTTPLIB fmt::fmt)
  set_target_properties(steadypg_http PROPERTIES EXPORT_NAME http VERSION ${PROJECT_VERSION}
                                                 SOVERSION ${PROJECT_VERSION_MAJOR})
  steadypg_warnings(steadypg_http)
endif()
