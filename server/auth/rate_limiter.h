// RateLimiter: a token bucket per key (a token's name): `per_second` on average, up to a
// second's worth at once. Take() either spends one or says how long until one is there.
#pragma once

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace jobstream::auth {

class RateLimiter {
 public:
  explicit RateLimiter(double per_second) : per_second_(per_second) {}

  // True if `key` may go now; otherwise false, with *wait the time until it may.
  bool Take(const std::string& key, absl::Time now, absl::Duration* wait) ABSL_LOCKS_EXCLUDED(mu_);
  double per_second() const { return per_second_; }

 private:
  struct Bucket {
    double tokens;
    absl::Time refilled;
  };
  const double per_second_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
};

}  // namespace jobstream::auth
