// The pool every client uses, compiled once here: include/steadypg/pool.hpp declares it
// `extern template`, so no other translation unit instantiates the implementation.
#include "basic_pool_impl.hpp"
#include "steadypg/connection.hpp"
#include "steadypg/pool.hpp"

namespace steadypg {

template class basic_pool<connection>;

}  // namespace steadypg
