#pragma once

// Looking at processes the way the cluster fixtures need to: by pid, and by where they run.

#include <filesystem>
#include <vector>

namespace steadypg::test {

/// True when `pid` names a process that has not exited (a zombie counts as exited).
[[nodiscard]] bool process_alive(int pid);

/// Pids of the live processes whose working directory is `dir` or inside it (a server's
/// backends run in its data directory); with `program_dir`, only those running a program
/// from that directory (the PostgreSQL binaries). After a fixture is gone, a test expects none.
[[nodiscard]] std::vector<int> processes_in(const std::filesystem::path& dir,
                                            const std::filesystem::path& program_dir = {});

}  // namespace steadypg::test
