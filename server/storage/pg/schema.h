// The PostgreSQL store's schema: created and migrated by the server itself, one numbered
// step at a time, recorded in jobstream_schema. Servers starting together migrate one at a
// time (an advisory lock), and a server refuses a schema newer than it knows, rather than
// write rows a newer server would misread.
#pragma once

#include "absl/status/statusor.h"
#include "server/storage/pg/connection.h"

namespace jobstream::storage::pg {

// The version this server writes.
int SchemaVersion();

// Brings the database's schema to SchemaVersion(); the version it was at before (0 for
// an empty database). FAILED_PRECONDITION, saying both versions, if it is newer.
absl::StatusOr<int> MigrateSchema(PgConnection& conn);

}  // namespace jobstream::storage::pg
