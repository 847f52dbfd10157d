#include "steadypg/cluster.hpp"

#include "check.hpp"

namespace steadypg {

std::string_view to_string(host_role r) noexcept {
  switch (r) {
    case host_role::unknown: return "unknown";
    case host_role::primary: return "primary";
    case host_role::replica: return "replica";
    case host_role::lagging: return "lagging";
    case host_role::read_only_primary: return "read_only_primary";
    case host_role::unavailable: return "unavailable";
  }
  return "unknown";
}

void cluster_options::validate() const {
  using internal::check_range;
  namespace ranges = internal::ranges;
  check_range("cluster.max_replica_lag", max_replica_lag, ranges::max_replica_lag);
  check_range("cluster.probe_interval", probe_interval, ranges::probe_interval);
  check_range("cluster.probe_timeout", probe_timeout, ranges::probe_interval);
}

}  // namespace steadypg
