#pragma once

// Private: how the library makes its (immutable) errors. Every fact is given before the error
// is thrown; nothing sets one afterwards.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "steadypg/error.hpp"

namespace steadypg::internal {

/// Every fact an error reports (shared by its copies, never changed once thrown).
struct error_details {
  server_error_fields fields;
  failure_kind kind = failure_kind::server_error;
  steadypg::outcome outcome = outcome::fatal;
  error_origin origin = error_origin::server;
  std::string operation;
  int attempts = 1;
  std::vector<attempt_error> earlier;
  bool broken = false;                           // the connection that produced it must not be reused
  bool budget_exhausted = false;                 // the retry layer gave up because the retry budget was spent
  bool cancel_sent = false;                      // a cancel request for it was delivered to the server
  bool commit_in_doubt = false;                  // indeterminate_commit
  std::optional<std::uint64_t> xid;              // the lost COMMIT's transaction id
  std::optional<server_identity> commit_server;  // where that COMMIT went
  commit_resolution resolution = commit_resolution::none;
  std::string reworded;  // raise_with: the new what() when not empty (then cleared)
};

/// The origin an error of `kind` has unless told otherwise: server_error → server,
/// usage → client, everything else → connection.
[[nodiscard]] error_origin default_origin(failure_kind kind) noexcept;

/// What the retry layer adds to the error it gives up with.
struct call_outcome_facts {
  std::string_view operation;  ///< set when the error has none of its own
  int attempts = 1;
  std::vector<attempt_error> earlier;
  bool budget_exhausted = false;
  /// What asking the server about a lost COMMIT found out; nullopt keeps the error's own.
  std::optional<commit_resolution> resolution{};
  /// Why asking did not settle it (resolution unknown); added to the message.
  std::string_view resolution_reason;
};

/// Collects the facts of an error, then makes it:
///
///     throw error_builder(failure_kind::connection_lost, outcome::not_sent)
///         .operation(op).broken().build<connection_error>("the connection is closed");
class error_builder {
 public:
  error_builder(failure_kind kind, steadypg::outcome outcome) {
    m_d.kind = kind;
    m_d.outcome = outcome;
  }
  /// Starts from what the connection knew of `e`: fields, kind, outcome, operation, broken,
  /// cancel_sent, xid and commit server (not its origin, which follows the new kind unless set, nor its attempts).
  [[nodiscard]] static error_builder from(const error& e);

  error_builder& fields(server_error_fields f) {
    m_d.fields = std::move(f);
    return *this;
  }
  error_builder& kind(failure_kind k) noexcept {
    m_d.kind = k;
    return *this;
  }
  error_builder& outcome(steadypg::outcome o) noexcept {
    m_d.outcome = o;
    return *this;
  }
  error_builder& origin(error_origin o) noexcept {
    m_origin = o;
    return *this;
  }
  error_builder& operation(std::string_view op) {
    m_d.operation.assign(op);
    return *this;
  }
  error_builder& broken(bool on = true) noexcept {
    m_d.broken = on;
    return *this;
  }
  error_builder& cancel_sent(bool on = true) noexcept {
    m_d.cancel_sent = on;
    return *this;
  }
  /// The transaction id and the server of a COMMIT whose reply was lost.
  error_builder& in_doubt_commit(std::optional<std::uint64_t> xid, std::optional<server_identity> server) noexcept {
    m_d.xid = xid;
    m_d.commit_server = server;
    return *this;
  }

  /// The error, of type E (E's own class facts, e.g. pool_timeout's origin, win).
  template <typename E>
  [[nodiscard]] E build(std::string message) {
    m_d.origin = m_origin.value_or(default_origin(m_d.kind));
    return E(std::move(message), std::move(m_d));
  }

  /// Throws a copy of `e` of the same dynamic type that also carries `facts`; `e` itself is
  /// left as it is.
  [[noreturn]] static void raise_with_call_facts(const error& e, call_outcome_facts facts);

 private:
  error_details m_d;
  std::optional<error_origin> m_origin;
};

/// Throws the most specific exception for a server error with outcome `o`: `broken` says the
/// session did not survive it (connection_error, or indeterminate_commit when `commit_sent`).
[[noreturn]] void raise_server_error(server_error_fields fields, std::string_view operation, steadypg::outcome o,
                                     bool broken, bool commit_sent);

}  // namespace steadypg::internal
