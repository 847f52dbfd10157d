#include "processes.hpp"

#include <signal.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <string>
#include <system_error>

namespace fs = std::filesystem;

namespace steadypg::test {

bool process_alive(int pid) {
  if (pid <= 0) return false;
  if (::kill(pid, 0) != 0 && errno != EPERM) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  // pid (comm) state …: the state follows the last ')'.
  const auto close_paren = line.rfind(')');
  return close_paren == std::string::npos || close_paren + 2 >= line.size() || line[close_paren + 2] != 'Z';
}

std::vector<int> processes_in(const fs::path& dir, const fs::path& program_dir) {
  std::vector<int> pids;
  const std::string prefix = dir.string();
  std::error_code ec;
  // /proc/<pid>/exe names the program with its links resolved.
  const std::string programs = program_dir.empty() ? std::string() : fs::weakly_canonical(program_dir, ec).string();
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string pid_text = e.path().filename().string();
    if (pid_text.empty() ||
        !std::all_of(pid_text.begin(), pid_text.end(), [](unsigned char c) { return std::isdigit(c) != 0; })) {
      continue;
    }
    std::error_code link_ec;
    const std::string cwd = fs::read_symlink(e.path() / "cwd", link_ec).string();
    if (link_ec) continue;
    // A removed directory reads as "<path> (deleted)".
    if (cwd == prefix || cwd.rfind(prefix + "/", 0) == 0 || cwd.rfind(prefix + " ", 0) == 0) {
      if (!program_dir.empty()) {
        const std::string exe = fs::read_symlink(e.path() / "exe", link_ec).string();
        if (link_ec || exe.rfind(programs + "/", 0) != 0) continue;
      }
      const int pid = std::atoi(pid_text.c_str());
      if (process_alive(pid)) pids.push_back(pid);
    }
  }
  return pids;
}

}  // namespace steadypg::test
