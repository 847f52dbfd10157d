// The plan model and the rules without a server: the committed real plans parse and add up,
// PEV2's normalisation on a plan written by hand, the rules' thresholds, and garbled input.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include "steadypg/error.hpp"
#include "steadypg/plan.hpp"

using namespace steadypg;

namespace {

std::string read(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

const std::filesystem::path plans_dir = STEADYPG_PLAN_FIXTURES;

}  // namespace

TEST(plan_parse, committed_real_plans_parse_and_their_root_time_matches_execution_time) {
  int count = 0;
  for (const auto& e : std::filesystem::directory_iterator(plans_dir)) {
    if (e.path().extension() != ".json") continue;
    ++count;
    const auto p = plan::parse(read(e.path()));
    EXPECT_TRUE(p.analyzed) << e.path();
    ASSERT_TRUE(p.execution_time_ms.has_value()) << e.path();
    EXPECT_NEAR(p.root.total_time_ms, *p.execution_time_ms, *p.execution_time_ms * 0.05) << e.path();
    EXPECT_GT(p.nodes().size(), 1u) << e.path();
    (void)plan::analyze(p);
  }
  EXPECT_GE(count, 4);
}

TEST(plan_parse, normalises_per_loop_figures_like_pev2) {
  const auto p = plan::parse(R"([{"Plan": {
    "Node Type": "Nested Loop", "Startup Cost": 0, "Total Cost": 100, "Plan Rows": 10, "Plan Width": 8,
    "Actual Total Time": 50.0, "Actual Rows": 1000, "Actual Loops": 1, "Custom Key": {"x": [1, 2]},
    "Plans": [
      {"Node Type": "Seq Scan", "Parent Relationship": "Outer", "Relation Name": "a", "Total Cost": 10,
       "Plan Rows": 100, "Actual Total Time": 5.0, "Actual Rows": 100, "Actual Loops": 1},
      {"Node Type": "Index Scan", "Parent Relationship": "Inner", "Relation Name": "b", "Index Name": "b_pkey",
       "Total Cost": 0.5, "Plan Rows": 1, "Actual Total Time": 0.4, "Actual Rows": 10, "Actual Loops": 100,
       "Rows Removed by Filter": 3}
    ]}, "Planning Time": 0.1, "Execution Time": 50.5}])");
  const auto& root = p.root;
  EXPECT_EQ(root.path, "0");
  ASSERT_EQ(root.children.size(), 2u);
  const auto& inner = root.children[1];
  EXPECT_EQ(inner.path, "0.1");
  EXPECT_DOUBLE_EQ(inner.total_time_ms, 40.0);  // 0.4 ms × 100 loops
  EXPECT_DOUBLE_EQ(inner.rows, 1000);
  EXPECT_DOUBLE_EQ(inner.planned_rows, 100);
  EXPECT_DOUBLE_EQ(inner.removed_rows, 300);
  EXPECT_DOUBLE_EQ(*inner.estimate_factor, 10);
  EXPECT_TRUE(inner.under_estimate);
  EXPECT_DOUBLE_EQ(root.exclusive_time_ms, 5.0);  // 50 − 5 − 40
  EXPECT_DOUBLE_EQ(root.exclusive_cost, 89.5);
  EXPECT_DOUBLE_EQ(*root.estimate_factor, 100);
  EXPECT_EQ(inner.label(), "Index Scan using b_pkey on b");
  // Unknown keys are kept as they came.
  EXPECT_EQ(root.key("Custom Key").value_or(""), R"({"x":[1,2]})");
  EXPECT_EQ(root.keys.front().first, "Node Type");
  EXPECT_DOUBLE_EQ(*p.execution_time_ms, 50.5);
}

TEST(plan_parse, parallel_workers_share_the_time) {
  const auto p = plan::parse(R"({"Plan": {"Node Type": "Gather", "Workers Launched": 2, "Actual Total Time": 30,
    "Actual Rows": 3, "Actual Loops": 1, "Plans": [{"Node Type": "Seq Scan", "Actual Total Time": 29,
    "Actual Rows": 1, "Actual Loops": 3}]}})");
  EXPECT_DOUBLE_EQ(p.root.total_time_ms, 30);
  EXPECT_DOUBLE_EQ(p.root.children[0].total_time_ms, 29);  // 29 × 3 loops ÷ (2 workers + 1)
  EXPECT_DOUBLE_EQ(p.root.children[0].rows, 3);
}

TEST(plan_parse, bad_input_is_a_clear_error_and_odd_types_are_absent) {
  EXPECT_THROW((void)plan::parse(""), usage_error);
  EXPECT_THROW((void)plan::parse("[]"), usage_error);
  EXPECT_THROW((void)plan::parse("[1]"), usage_error);
  EXPECT_THROW((void)plan::parse(R"({"Plan": 3})"), usage_error);
  EXPECT_THROW((void)plan::parse(R"({"Plans": []})"), usage_error);
  EXPECT_THROW((void)plan::parse("\xff\xfe{"), usage_error);
  const auto odd = plan::parse(R"({"Plan": {"Node Type": 7, "Total Cost": "high", "Actual Rows": null,
    "Plans": {"not": "an array"}, "Hash Batches": "two"}})");
  EXPECT_EQ(odd.root.node_type, "?");
  EXPECT_DOUBLE_EQ(odd.root.total_cost, 0);
  EXPECT_FALSE(odd.root.actual_rows.has_value());
  EXPECT_TRUE(odd.root.children.empty());
  EXPECT_FALSE(odd.root.number_key("Hash Batches").has_value());
  EXPECT_TRUE(plan::analyze(odd).empty());
  const auto mixed =
      plan::parse(R"({"Plan": {"Node Type": "Hash", "Plans": [1, "x", null, {"Node Type": "Seq Scan"}]}})");
  ASSERT_EQ(mixed.root.children.size(), 1u);
  EXPECT_EQ(mixed.root.children[0].path, "0.0");
}

TEST(plan_parse, fuzz_truncated_and_garbled_real_plans_never_crash) {
  std::mt19937 rng(18);
  int parsed = 0;
  int refused = 0;
  for (const auto& e : std::filesystem::directory_iterator(plans_dir)) {
    if (e.path().extension() != ".json") continue;
    const std::string text = read(e.path());
    for (int i = 0; i < 300; ++i) {
      std::string s = text;
      switch (i % 3) {
        case 0:  // truncated
          s.resize(rng() % s.size());
          break;
        case 1:  // bytes flipped
          for (int k = 0; k < 5; ++k) s[rng() % s.size()] = static_cast<char>(rng() % 256);
          break;
        default:  // a value's type changed: numbers become strings, strings become arrays
          for (int k = 0; k < 5; ++k) {
            const auto pos = s.find(": ", rng() % s.size());
            if (pos == std::string::npos) continue;
            s.insert(pos + 2, (rng() % 2) != 0 ? "[" : "{\"k\": ");
            const auto end = s.find_first_of(",\n", pos + 3);
            if (end != std::string::npos) s.insert(end, (rng() % 2) != 0 ? "]" : "}");
          }
      }
      try {
        const auto p = plan::parse(s);
        (void)plan::analyze(p);
        ++parsed;
      } catch (const usage_error&) {
        ++refused;
      }
    }
  }
  EXPECT_GT(parsed, 0);
  EXPECT_GT(refused, 0);
}

TEST(plan_parse, deep_nesting_is_refused_not_a_stack_overflow) {
  std::string s;
  for (int i = 0; i < 5000; ++i) s += R"({"Node Type": "Limit", "Plans": [)";
  s += "{}";
  for (int i = 0; i < 5000; ++i) s += "]}";
  EXPECT_THROW((void)plan::parse(R"({"Plan": )" + s + "}"), usage_error);
}

namespace {
std::vector<std::string> rules(const std::string& json, const plan::rule_thresholds& t = {}) {
  std::vector<std::string> out;
  for (const auto& f : plan::analyze(plan::parse(json), t)) out.push_back(f.rule);
  return out;
}
}  // namespace

TEST(plan_rules_unit, thresholds_are_the_documented_ones) {
  const std::string seq = R"({"Plan": {"Node Type": "Seq Scan", "Relation Name": "t", "Filter": "x = 1",
    "Plan Rows": 1000, "Actual Rows": 1000, "Actual Loops": 1, "Rows Removed by Filter": 9000}})";
  EXPECT_EQ(rules(seq), std::vector<std::string>{"seq_scan_selective"});  // 10000 read, 90 % removed
  const std::string seq_small = R"({"Plan": {"Node Type": "Seq Scan", "Relation Name": "t", "Filter": "x = 1",
    "Plan Rows": 999, "Actual Rows": 999, "Actual Loops": 1, "Rows Removed by Filter": 8999}})";
  EXPECT_TRUE(rules(seq_small).empty());
  plan::rule_thresholds t;
  t.seq_scan_min_rows = 100;
  EXPECT_EQ(rules(seq_small, t), std::vector<std::string>{"seq_scan_selective"});
}

TEST(plan_rules_unit, misestimate_levels_and_limit) {
  auto mk = [](double planned, double actual, bool under_limit) {
    std::string n = R"({"Node Type": "Seq Scan", "Relation Name": "t", "Plan Rows": )" + std::to_string(planned) +
                    R"(, "Actual Rows": )" + std::to_string(actual) + R"(, "Actual Loops": 1})";
    if (under_limit) {
      n = R"({"Node Type": "Limit", "Plan Rows": 1, "Actual Rows": 1, "Actual Loops": 1, "Plans": [)" + n + "]}";
    }
    return plan::analyze(plan::parse(R"({"Plan": )" + n + "}"));
  };
  EXPECT_TRUE(mk(100, 999, false).empty());  // factor 9.99
  auto w = mk(100, 1000, false);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].level, plan::severity::warning);
  auto c = mk(10, 1000, false);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].level, plan::severity::critical);
  EXPECT_TRUE(mk(1, 9, false).empty());       // both under 10 rows
  EXPECT_TRUE(mk(10000, 10, true).empty());   // under a Limit
  EXPECT_EQ(mk(1000, 10, false).size(), 1u);  // over-estimates count too
}

TEST(plan_rules_unit, sort_hash_bitmap_and_index_filter) {
  EXPECT_EQ(rules(R"({"Plan": {"Node Type": "Sort", "Sort Method": "external merge", "Sort Space Used": 2000,
    "Sort Space Type": "Disk", "Actual Rows": 1, "Plan Rows": 1, "Actual Loops": 1}})"),
            std::vector<std::string>{"sort_spill"});
  EXPECT_TRUE(
      rules(R"({"Plan": {"Node Type": "Sort", "Sort Method": "quicksort", "Sort Space Type": "Memory"}})").empty());
  EXPECT_EQ(rules(R"({"Plan": {"Node Type": "Hash", "Hash Batches": 4, "Original Hash Batches": 1}})"),
            std::vector<std::string>{"hash_batches"});
  EXPECT_TRUE(rules(R"({"Plan": {"Node Type": "Hash", "Hash Batches": 1, "Original Hash Batches": 1}})").empty());
  EXPECT_EQ(rules(R"({"Plan": {"Node Type": "Bitmap Heap Scan", "Lossy Heap Blocks": 5, "Exact Heap Blocks": 0}})"),
            std::vector<std::string>{"lossy_bitmap"});
  EXPECT_TRUE(rules(R"({"Plan": {"Node Type": "Bitmap Heap Scan", "Lossy Heap Blocks": 0}})").empty());
  EXPECT_EQ(rules(R"({"Plan": {"Node Type": "Index Scan", "Index Name": "i", "Relation Name": "t",
    "Plan Rows": 100, "Actual Rows": 100, "Actual Loops": 1, "Rows Removed by Filter": 1000, "Filter": "f = 1"}})"),
            std::vector<std::string>{"filter_heavy_index"});
  EXPECT_TRUE(rules(R"({"Plan": {"Node Type": "Index Scan", "Index Name": "i", "Relation Name": "t",
    "Plan Rows": 101, "Actual Rows": 101, "Actual Loops": 1, "Rows Removed by Filter": 1000}})")
                  .empty());
}

TEST(plan_rules_unit, thresholds_validate) {
  plan::rule_thresholds t;
  EXPECT_NO_THROW(t.validate());
  t.seq_scan_removed_share = 1.5;
  EXPECT_THROW(t.validate(), config_error);
  t = {};
  t.misestimate_critical = 5;
  EXPECT_THROW(t.validate(), config_error);
  plan::advisor_options a;
  a.min_savings = 1;
  EXPECT_THROW(a.validate(), config_error);
  plan::explain_options e;
  e.statement_timeout = std::chrono::milliseconds(0);
  EXPECT_THROW(e.validate(), config_error);
}
