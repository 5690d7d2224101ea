// A job type's limits per concurrency key (its config's keyConcurrency and keyRate), and a
// key held back at them now: what both stores' queues keep and ListJobTypes shows.
#pragma once

#include <cstdint>
#include <string>

namespace jobstream::storage {

struct KeyLimit {
  int concurrency = 0;  // running at once; 0: no limit
  double rate = 0;      // starts per second (a bucket of one second's, at least one); 0: none
  bool limited() const { return concurrency > 0 || rate > 0; }
};

struct KeyAtLimit {
  std::string tenant;
  std::string key;
  int64_t running = 0;
  int64_t queued = 0;
  bool concurrency = false;  // at its type's keyConcurrency
  int64_t rate_wait_ms = 0;  // out of starts (keyRate) until then; 0: not
};

}  // namespace jobstream::storage
