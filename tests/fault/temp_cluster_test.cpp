#include <gtest/gtest.h>
#include <unistd.h>

#include <fmt/format.h>

#include <filesystem>

#include "cluster_env.hpp"
#include "steadypg/steadypg.hpp"

using namespace steadypg;
using steadypg::testing::temp_cluster;
using steadypg::testing::temp_cluster_options;

TEST(temp_cluster, lifecycle_and_cleanup) {
  std::filesystem::path dir;
  {
    temp_cluster cluster;
    dir = cluster.dir();
    EXPECT_TRUE(std::filesystem::exists(dir / "data" / "PG_VERSION"));
    EXPECT_TRUE(cluster.running());
    EXPECT_GT(cluster.port(), 0);
    EXPECT_EQ(temp_cluster::running_pid_in(dir), cluster.pid());
    connection tcp(cluster.dsn());
    EXPECT_EQ(tcp.query_value<std::string>("SELECT inet_server_addr()::text"), "127.0.0.1/32");
    connection unix_socket(cluster.socket_dsn());
    EXPECT_EQ(unix_socket.query_value<std::optional<std::string>>("SELECT inet_server_addr()::text"), std::nullopt);
    EXPECT_EQ(tcp.query_value<std::string>("SHOW listen_addresses"), "127.0.0.1");
    if (::geteuid() == 0) {
      EXPECT_EQ(tcp.query_value<std::string>("SELECT current_setting('data_directory')"), (dir / "data").string());
    }
  }
  EXPECT_FALSE(std::filesystem::exists(dir)) << "the directory must be deleted";
}

TEST(temp_cluster, stop_start_restart_kill) {
  temp_cluster cluster;
  const int port = cluster.port();
  {
    connection c(cluster.dsn());
    (void)c.execute("CREATE TABLE survives (x int); INSERT INTO survives VALUES (42)");
  }
  cluster.stop();
  EXPECT_FALSE(cluster.running());
  connection_options o;
  o.dsn = cluster.dsn();
  o.connect_timeout = std::chrono::milliseconds(1000);
  EXPECT_THROW(connection c(o), connection_error);
  cluster.start();
  EXPECT_EQ(cluster.port(), port) << "a restart keeps the port so DSNs stay valid";
  EXPECT_EQ(connection(cluster.dsn()).query_value<int>("SELECT x FROM survives"), 42);
  cluster.restart();
  EXPECT_EQ(connection(cluster.dsn()).query_value<int>("SELECT x FROM survives"), 42);
  cluster.kill();
  EXPECT_FALSE(cluster.running());
  cluster.start();  // crash recovery
  EXPECT_EQ(connection(cluster.dsn()).query_value<int>("SELECT x FROM survives"), 42);
}

TEST(temp_cluster, destructor_cleans_up_when_a_test_throws) {
  std::filesystem::path dir;
  int pid = 0;
  try {
    temp_cluster cluster;
    dir = cluster.dir();
    pid = cluster.pid();
    throw std::runtime_error("simulated test failure");
  } catch (const std::runtime_error&) {
  }
  EXPECT_FALSE(std::filesystem::exists(dir));
  EXPECT_NE(::kill(pid, 0), 0) << "the server must be gone";
}

TEST(temp_cluster, password_is_required_over_tcp) {
  temp_cluster_options o;
  o.password = "s3cret-pw";
  temp_cluster cluster(o);
  EXPECT_EQ(connection(cluster.dsn()).query_value<int>("SELECT 1"), 1);
  connection_options bad;
  bad.dsn = fmt::format("host=127.0.0.1 port={} user=postgres dbname=postgres password=wrong", cluster.port());
  try {
    connection c(bad);
    FAIL();
  } catch (const connection_error& e) {
    EXPECT_EQ(e.sqlstate(), "28P01");
    EXPECT_EQ(std::string(e.what()).find("wrong"), std::string::npos) << "no password in messages";
  }
}

TEST(temp_cluster, detached_server_outlives_the_object) {
  const auto dir = std::filesystem::temp_directory_path() / fmt::format("steadypg-detach-{}", ::getpid());
  std::filesystem::remove_all(dir);
  {
    temp_cluster_options o;
    o.dir = dir;
    o.keep = true;
    o.die_with_parent = false;
    temp_cluster cluster(o);
    cluster.detach();
  }
  EXPECT_GT(temp_cluster::running_pid_in(dir), 0);
  EXPECT_TRUE(temp_cluster::stop_in(dir));
  EXPECT_EQ(temp_cluster::running_pid_in(dir), 0);
  EXPECT_FALSE(temp_cluster::stop_in(dir));
  std::filesystem::remove_all(dir);
}
