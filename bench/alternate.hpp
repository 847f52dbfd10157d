// What the side-by-side benchmarks share: a fixed-time rate with client threads, and rounds
// of two sides in pairs with the order swapped every pair.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <random>
#include <thread>
#include <vector>

namespace steadypg::bench {

/// Calls per second: `clients` threads call `call(rng)` (each thread its own generator,
/// seeded with its index + 1) for `seconds`.
template <typename Call>
double rate(int clients, double seconds, Call call) {
  using clock_type = std::chrono::steady_clock;
  std::atomic<long> done{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  const auto start = clock_type::now();
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t) + 1);
      while (!stop.load(std::memory_order_relaxed)) {
        call(rng);
        done.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& th : threads) th.join();
  const double elapsed = std::chrono::duration<double>(clock_type::now() - start).count();
  return static_cast<double>(done.load()) / elapsed;
}

/// The middle value (the upper one of an even count); `v` must not be empty.
inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

/// Each side's figure per round, and the pairs' ratios a/b.
struct alternated {
  std::vector<double> a;
  std::vector<double> b;
  std::vector<double> ratios;
};

/// `rounds` rounds of `run_a()` and `run_b()` (each returns its figure), b first in even
/// rounds and a first in odd ones, so that a neighbour's load (the machine is shared) hits
/// both sides alike. `report(round, a, b)` is called after each round (round from 1).
template <typename RunA, typename RunB, typename Report>
alternated alternate(int rounds, RunA run_a, RunB run_b, Report report) {
  alternated out;
  for (int r = 0; r < rounds; ++r) {
    double a = 0, b = 0;
    if (r % 2 == 0) {
      b = run_b();
      a = run_a();
    } else {
      a = run_a();
      b = run_b();
    }
    out.a.push_back(a);
    out.b.push_back(b);
    out.ratios.push_back(a / b);
    report(r + 1, a, b);
  }
  return out;
}

}  // namespace steadypg::bench
