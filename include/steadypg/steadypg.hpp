#pragma once

/// Umbrella header: everything a program needs.

#include "steadypg/batch.hpp"
#include "steadypg/client.hpp"
#include "steadypg/cluster.hpp"
#include "steadypg/config.hpp"
#include "steadypg/connection.hpp"
#include "steadypg/copy.hpp"
#include "steadypg/dsn.hpp"
#include "steadypg/error.hpp"
#include "steadypg/observe/log.hpp"
#include "steadypg/observe/metrics.hpp"
#include "steadypg/observer.hpp"
#include "steadypg/params.hpp"
#include "steadypg/pipeline.hpp"
#include "steadypg/plan.hpp"
#include "steadypg/pool.hpp"
#include "steadypg/result.hpp"
#include "steadypg/route.hpp"
#include "steadypg/sqlstate.hpp"
#include "steadypg/transaction.hpp"
#include "steadypg/version.hpp"
