// client::explain and client::advise: plan analysis on one borrowed connection.

#include "steadypg/client.hpp"
#include "steadypg/plan.hpp"

namespace steadypg {

plan::explain_report client::explain(std::string_view sql, const param_list& params,
                                     const plan::explain_options& options) {
  auto c = acquire("explain");
  return plan::explain(c.get(), sql, params, options);
}

plan::advice_report client::advise(std::string_view sql, const param_list& params,
                                   const plan::advisor_options& options) {
  // Hypothetical indexes exist only in the backend that made them: one connection throughout.
  auto c = acquire("advise");
  return plan::advise(c.get(), sql, params, options);
}

}  // namespace steadypg
