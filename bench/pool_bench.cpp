// Pool micro-benchmarks without a server (a fake connection factory):
//  - BM_acquire_release: uncontended acquire + release;
//  - BM_contended/threads:16: 16 threads on 4 connections;
// then a fairness run: 16 threads on 4 connections for 2 s, reporting throughput and the
// max/mean ratio of acquire waits (and of per-thread operation counts).
#include <benchmark/benchmark.h>
#include <steadypg/pool.hpp>

#include "pool/basic_pool_impl.hpp"  // the pool instantiated with fakes

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <numeric>
#include <thread>
#include <vector>

namespace {

struct fake_conn {
  int id = 0;
};

struct fake_factory : steadypg::pool_factory<fake_conn> {
  std::atomic<int> n{0};
  std::unique_ptr<fake_conn> connect(std::chrono::milliseconds) override {
    auto c = std::make_unique<fake_conn>();
    c->id = ++n;
    return c;
  }
  bool quick_check(fake_conn&) noexcept override { return true; }
  bool validate(fake_conn&, std::chrono::milliseconds) noexcept override { return true; }
  steadypg::reset_result reset(fake_conn&) noexcept override { return steadypg::reset_result::ok; }
};

steadypg::pool_options options(std::size_t max) {
  steadypg::pool_options o;
  o.max_size = max;
  o.acquire_timeout = std::chrono::seconds(60);
  return o;
}

void BM_acquire_release(benchmark::State& state) {
  steadypg::basic_pool<fake_conn> pool(options(1), std::make_shared<fake_factory>());
  (void)pool.acquire();
  for (auto _ : state) {
    auto h = pool.acquire();
    benchmark::DoNotOptimize(h->id);
  }
}
BENCHMARK(BM_acquire_release);

steadypg::basic_pool<fake_conn>* g_shared = nullptr;

void BM_contended(benchmark::State& state) {
  if (state.thread_index() == 0)
    g_shared = new steadypg::basic_pool<fake_conn>(options(4), std::make_shared<fake_factory>());
  for (auto _ : state) {
    auto h = g_shared->acquire();
    benchmark::DoNotOptimize(h->id);
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    delete g_shared;
    g_shared = nullptr;
  }
}
BENCHMARK(BM_contended)->Threads(16)->UseRealTime();

void fairness_run() {
  constexpr int threads = 16;
  steadypg::basic_pool<fake_conn> pool(options(4), std::make_shared<fake_factory>());
  std::vector<std::vector<double>> waits(threads);
  std::vector<long> ops(threads, 0);
  std::atomic<bool> go{false};
  const auto duration = std::chrono::seconds(2);
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      waits[t].reserve(1 << 20);
      while (!go) std::this_thread::yield();
      const auto end = std::chrono::steady_clock::now() + duration;
      while (std::chrono::steady_clock::now() < end) {
        const auto t0 = std::chrono::steady_clock::now();
        auto h = pool.acquire();
        const auto t1 = std::chrono::steady_clock::now();
        waits[t].push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        benchmark::DoNotOptimize(h->id);
        ++ops[t];
      }
    });
  }
  go = true;
  for (auto& t : ts) t.join();
  std::vector<double> all;
  for (auto& w : waits) all.insert(all.end(), w.begin(), w.end());
  std::sort(all.begin(), all.end());
  const double mean = std::accumulate(all.begin(), all.end(), 0.0) / static_cast<double>(all.size());
  const double p99 = all[all.size() * 99 / 100];
  const double max = all.back();
  const long total = std::accumulate(ops.begin(), ops.end(), 0L);
  const auto [mn, mx] = std::minmax_element(ops.begin(), ops.end());
  std::printf(
      "fairness: 16 threads on 4 connections for 2 s: %.0f acquires/s; wait mean %.2f us, p99 %.2f us, "
      "max %.2f us, max/mean %.1f; per-thread ops min %ld max %ld (max/min %.2f)\n",
      static_cast<double>(total) / 2.0, mean, p99, max, max / mean, *mn, *mx,
      static_cast<double>(*mx) / static_cast<double>(*mn));
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  fairness_run();
  return 0;
}
