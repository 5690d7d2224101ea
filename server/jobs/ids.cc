#include "absl/strings/string_view.h"
#include "server/jobs/ids.h"

#include <cstdint>
#include <random>

#include "absl/base/thread_annotations.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace jobstream::jobs {
namespace {

struct Generator {
  absl::Mutex mu;
  std::mt19937_64 rng ABSL_GUARDED_BY(mu){std::random_device{}()};
  uint64_t last_ms ABSL_GUARDED_BY(mu) = 0;
  // The 80 random bits as 16 + 64, incremented within one millisecond (monotonic ULID).
  uint16_t hi ABSL_GUARDED_BY(mu) = 0;
  uint64_t lo ABSL_GUARDED_BY(mu) = 0;
};

Generator& generator() {
  static Generator* g = new Generator();
  return *g;
}

}  // namespace

std::string NewJobId(absl::Time now) {
  Generator& g = generator();
  uint64_t ms = static_cast<uint64_t>(absl::ToUnixMillis(now)) & ((uint64_t{1} << 48) - 1);
  uint16_t hi;
  uint64_t lo;
  {
    absl::MutexLock lock(&g.mu);
    if (ms <= g.last_ms) {
      ms = g.last_ms;  // clock went back or same millisecond: count up from the last id
      if (++g.lo == 0) ++g.hi;
    } else {
      g.last_ms = ms;
      g.hi = static_cast<uint16_t>(g.rng());
      g.lo = g.rng();
    }
    hi = g.hi;
    lo = g.lo;
  }
  // 128 bits: ms(48) hi(16) lo(64); 26 base32 digits hold 130, the top two are zero.
  std::string id(kJobIdLength, '0');
  for (int i = kJobIdLength - 1; i >= 0; --i) {
    id[i] = kIdAlphabet[lo & 31];
    lo = (lo >> 5) | (static_cast<uint64_t>(hi & 31) << 59);
    hi = static_cast<uint16_t>((hi >> 5) | ((ms & 31) << 11));
    ms >>= 5;
  }
  return id;
}

absl::Status ValidateJobId(absl::string_view id) {
  if (id.empty()) return absl::InvalidArgumentError("job_id is required");
  auto bad = [&](absl::string_view why) {
    absl::string_view shown = id.substr(0, 40);
    return absl::InvalidArgumentError(absl::StrCat(
        "job_id \"", absl::CHexEscape(shown), id.size() > shown.size() ? "…" : "",
        "\" is not a job id: ", why));
  };
  if (id.size() != kJobIdLength) {
    return bad(absl::StrCat("a job id has ", kJobIdLength, " characters, not ", id.size()));
  }
  for (char c : id) {
    if (absl::string_view(kIdAlphabet).find(c) == absl::string_view::npos) {
      return bad("only 0-9 and lower-case a-z except i, l, o, u are used");
    }
  }
  if (id[0] > '7') return bad("it is out of range");
  return absl::OkStatus();
}

}  // namespace jobstream::jobs
