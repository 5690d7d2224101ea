// PgStore's per-key limits, beside what ClaimLeased does with them: what ListJobTypes
// shows of the keys at their limit, and the end of lanes no claim needs any more.
#include "absl/strings/str_cat.h"
#include "server/storage/pg/pg_store.h"

namespace jobstream::storage::pg {

absl::StatusOr<std::vector<KeyAtLimit>> PgStore::KeysAtLimit(
    const std::string& type, const KeyLimit& limit,
    const std::optional<std::string>& tenant, int64_t now_ms, int max, int* total) const {
  std::vector<KeyAtLimit> keys;
  *total = 0;
  absl::Status status = pool_.Use([&](PgConnection& conn) -> absl::Status {
    // A key is rate-bound while its bucket, refilled to now, holds less than one start;
    // it may start again once it holds one.
    auto rows = conn.Exec(
        "WITH k AS (SELECT tenant, concurrency_key, count(*) FILTER (WHERE state = 2) AS running,"
        "  count(*) FILTER (WHERE state = 1) AS queued,"
        "  count(*) FILTER (WHERE state = 1 AND ready_ms <= $2) AS ready"
        "  FROM jobs WHERE type = $1 AND state IN (1, 2) AND ($5::text IS NULL OR tenant = $5)"
        "  GROUP BY 1, 2),"
        " l AS (SELECT k.*, $3::int > 0 AND k.running >= $3::int AS at_concurrency,"
        "  CASE WHEN $4::float8 > 0 AND b.tokens + ($2 - b.tokens_ms) * $4::float8 / 1000 < 1"
        "   THEN b.tokens_ms + ceil((1 - b.tokens) * 1000 / $4::float8)::bigint END AS wait_ms"
        "  FROM k LEFT JOIN lanes b ON b.type = $1 AND b.tenant = k.tenant"
        "   AND b.concurrency_key = k.concurrency_key)"
        " SELECT tenant, concurrency_key, running, queued, at_concurrency::int,"
        "  COALESCE(wait_ms, 0), count(*) OVER () FROM l"
        " WHERE ready > 0 AND (at_concurrency OR wait_ms IS NOT NULL)"
        " ORDER BY queued DESC, tenant, concurrency_key LIMIT $6",
        {PgParam::Text(type), PgParam::Int(now_ms), PgParam::Int(limit.concurrency),
         PgParam::Text(absl::StrCat(limit.rate)),
         tenant ? PgParam::Text(*tenant) : PgParam::Null(), PgParam::Int(max)});
    if (!rows.ok()) return rows.status();
    for (int i = 0; i < rows->rows(); ++i) {
      KeyAtLimit key{std::string(rows->Get(i, 0)), std::string(rows->Get(i, 1))};
      auto running = rows->GetInt64(i, 2);
      auto queued = rows->GetInt64(i, 3);
      auto at_concurrency = rows->GetInt64(i, 4);
      auto wait_ms = rows->GetInt64(i, 5);
      auto count = rows->GetInt64(i, 6);
      for (const auto* n : {&running, &queued, &at_concurrency, &wait_ms, &count}) {
        if (!n->ok()) return n->status();
      }
      key.running = *running;
      key.queued = *queued;
      key.concurrency = *at_concurrency != 0;
      key.rate_wait_ms = *wait_ms;
      *total = static_cast<int>(*count);
      keys.push_back(std::move(key));
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return keys;
}

absl::StatusOr<int64_t> PgStore::RemoveIdleLanes(int64_t before_ms) {
  return Affected(
      "DELETE FROM lanes l WHERE COALESCE(l.tokens_ms, 0) < $1 AND NOT EXISTS (SELECT 1 FROM "
      "jobs j WHERE j.state = 1 AND j.type = l.type AND j.tenant = l.tenant AND "
      "j.concurrency_key = l.concurrency_key)",
      {PgParam::Int(before_ms)});
}

}  // namespace jobstream::storage::pg
