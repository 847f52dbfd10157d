// Every ```cpp block in README.md and docs/*.md must be, line for line, a //[name … //]
// region of a program in examples/ (which CI compiles and runs), so that the documentation
// shows code that builds and works; and every file path the docs name (public headers against
// include/, other headers, sources, examples, scripts) must exist. Usage: steadypg_docs_check SOURCE_DIR
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

std::vector<std::string> read_lines(const fs::path& p) {
  std::ifstream in(p);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    out.push_back(line);
  }
  return out;
}

// Removes the indentation all non-empty lines share.
std::string dedent(const std::vector<std::string>& lines) {
  std::size_t common = std::string::npos;
  for (const auto& l : lines) {
    if (l.empty()) continue;
    common = std::min(common, l.find_first_not_of(' '));
  }
  std::string out;
  for (const auto& l : lines) {
    out += l.empty() ? l : l.substr(common == std::string::npos ? 0 : common);
    out += '\n';
  }
  return out;
}

// `a/{b,c}.hpp` → `a/b.hpp`, `a/c.hpp` (one brace group).
std::vector<std::string> expand_braces(const std::string& path) {
  const auto open = path.find('{');
  const auto close = path.find('}', open == std::string::npos ? 0 : open);
  if (open == std::string::npos || close == std::string::npos) return {path};
  std::vector<std::string> out;
  std::stringstream alternatives(path.substr(open + 1, close - open - 1));
  for (std::string alt; std::getline(alternatives, alt, ',');) {
    out.push_back(path.substr(0, open) + alt + path.substr(close + 1));
  }
  return out;
}

struct missing_path {
  std::size_t line;     // 1-based
  std::string message;  // what is named and where it was looked for
};

// True when the match at `pos` starts a path rather than continuing one (`apps/steadypg/x.hpp`
// is not a `steadypg/x.hpp` header). std::regex has no lookbehind.
bool starts_path(const std::string& line, std::size_t pos) {
  if (pos == 0) return true;
  const char c = line[pos - 1];
  return !(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '/' || c == '.' || c == '-');
}

// The repository files a doc names that do not exist:
//  - public headers, however they are written (`steadypg/client.hpp`, `<steadypg/observe/log.hpp>`,
//    `include/steadypg/{copy,observer}.hpp`), against include/;
//  - headers named in backticks relative to include/steadypg/ (`client.hpp`, `observe/metrics.hpp`),
//    against include/steadypg/ and then src/ (private headers); a name whose directory is neither
//    (`nlohmann/json.hpp`) is another project's and is not checked;
//  - other repository files (src/…, examples/…, tests/…, scripts/…, apps/…, bench/…, cmake/…).
std::vector<missing_path> missing_paths(const fs::path& root, const std::vector<std::string>& lines) {
  static const std::regex header(R"((?:include/)?steadypg/[A-Za-z0-9_/{},]+\.hpp)");
  static const std::regex relative_header(R"(`([A-Za-z0-9_/{},]+\.hpp)`)");
  static const std::regex file(
      R"((?:^|[\s`(\[])((?:src|examples|bench|tests|scripts|apps|cmake)/[A-Za-z0-9_./{},-]+\.(?:cpp|hpp|sh|in|cmake|txt)))");
  static const std::regex rooted(R"(^(?:include|steadypg|src|examples|bench|tests|scripts|apps|cmake)/)");
  const fs::path public_dir = root / "include" / "steadypg";
  std::vector<missing_path> out;
  for (std::size_t n = 0; n < lines.size(); ++n) {
    const auto& line = lines[n];
    for (std::sregex_iterator it(line.begin(), line.end(), header), end; it != end; ++it) {
      if (!starts_path(line, static_cast<std::size_t>(it->position()))) continue;
      std::string named = it->str();
      if (named.rfind("include/", 0) == 0) named = named.substr(8);
      for (const auto& p : expand_braces(named)) {
        if (!fs::exists(root / "include" / p)) {
          out.push_back({n + 1, "names the public header " + p + ", but include/" + p + " does not exist"});
        }
      }
    }
    for (std::sregex_iterator it(line.begin(), line.end(), relative_header), end; it != end; ++it) {
      const std::string named = (*it)[1].str();
      if (std::regex_search(named, rooted)) continue;  // checked above or below
      const auto slash = named.find('/');
      if (slash != std::string::npos && !fs::is_directory(public_dir / named.substr(0, slash)) &&
          !fs::is_directory(root / "src" / named.substr(0, slash))) {
        continue;  // another project's header
      }
      for (const auto& p : expand_braces(named)) {
        if (!fs::exists(public_dir / p) && !fs::exists(root / "src" / p)) {
          out.push_back(
              {n + 1, "names the header " + p + ", but neither include/steadypg/" + p + " nor src/" + p + " exists"});
        }
      }
    }
    for (std::sregex_iterator it(line.begin(), line.end(), file), end; it != end; ++it) {
      for (const auto& p : expand_braces((*it)[1].str())) {
        if (!fs::exists(root / p)) out.push_back({n + 1, "names " + p + ", which does not exist"});
      }
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: steadypg_docs_check SOURCE_DIR\n";
    return 2;
  }
  const fs::path root = argv[1];
  std::vector<std::pair<std::string, std::string>> regions;  // name, text
  for (const auto& e : fs::directory_iterator(root / "examples")) {
    if (e.path().extension() != ".cpp") continue;
    const auto lines = read_lines(e.path());
    for (std::size_t i = 0; i < lines.size(); ++i) {
      const auto start = lines[i].find("//[");
      if (start == std::string::npos) continue;
      std::vector<std::string> body;
      std::size_t j = i + 1;
      for (; j < lines.size() && lines[j].find("//]") == std::string::npos; ++j) body.push_back(lines[j]);
      regions.emplace_back(e.path().filename().string() + "#" + lines[i].substr(start + 3), dedent(body));
      i = j;
    }
  }
  std::vector<fs::path> docs{root / "README.md"};
  for (const auto& e : fs::directory_iterator(root / "docs")) {
    if (e.path().extension() == ".md") docs.push_back(e.path());
  }
  std::sort(docs.begin(), docs.end());
  int blocks = 0, bad = 0;
  int missing = 0;
  for (const auto& doc : docs) {
    const auto lines = read_lines(doc);
    for (const auto& m : missing_paths(root, lines)) {
      ++missing;
      std::cerr << fs::relative(doc, root).string() << ":" << m.line << ": " << m.message << "\n";
    }
    for (std::size_t i = 0; i < lines.size(); ++i) {
      if (lines[i] != "```cpp") continue;
      std::vector<std::string> body;
      std::size_t j = i + 1;
      for (; j < lines.size() && lines[j] != "```"; ++j) body.push_back(lines[j]);
      ++blocks;
      const std::string text = dedent(body);
      const bool found = std::any_of(regions.begin(), regions.end(), [&](const auto& r) { return r.second == text; });
      if (!found) {
        ++bad;
        std::cerr << fs::relative(doc, root).string() << ":" << i + 1
                  << ": this C++ block is not a //[name … //] region of any program in examples/:\n"
                  << text << "\n";
      }
      i = j;
    }
  }
  std::cout << blocks << " C++ blocks in the docs, " << regions.size() << " example regions, " << bad
            << " blocks without an example, " << missing << " named files missing\n";
  return bad == 0 && missing == 0 && blocks > 0 ? 0 : 1;
}
