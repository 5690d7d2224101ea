#include "server/auth/rate_limiter.h"

#include <algorithm>

namespace jobstream::auth {

bool RateLimiter::Take(const std::string& key, absl::Time now, absl::Duration* wait) {
  const double capacity = std::max(per_second_, 1.0);
  absl::MutexLock lock(&mu_);
  auto [it, fresh] = buckets_.try_emplace(key, Bucket{capacity, now});
  Bucket& bucket = it->second;
  if (!fresh && now > bucket.refilled) {
    bucket.tokens = std::min(
        capacity, bucket.tokens + absl::ToDoubleSeconds(now - bucket.refilled) * per_second_);
    bucket.refilled = now;
  }
  if (bucket.tokens >= 1) {
    bucket.tokens -= 1;
    return true;
  }
  *wait = absl::Seconds((1 - bucket.tokens) / per_second_);
  return false;
}

}  // namespace jobstream::auth
