// Runs an example program against a fresh embedded server: DATABASE_URL points at it.
#include <steadypg/testing/temp_cluster.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: with_sandbox PROGRAM [ARGS...]\n";
    return 2;
  }
  steadypg::testing::temp_cluster cluster;
  ::setenv("DATABASE_URL", cluster.dsn().c_str(), 1);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execv(argv[1], argv + 1);
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
