// Tunables of the watch path, passed in so tests can shrink them to force slow paths.
#pragma once

#include <cstddef>

namespace jobstream::watch {

struct WatchOptions {
  // State events (everything but PROGRESS) a watcher may have queued; one more and it is
  // cut off with RESOURCE_EXHAUSTED. PROGRESS never counts: a slow watcher keeps only the
  // newest unsent one per job.
  size_t queue_limit = 256;
  // A watcher with at least this many unsent events counts as behind: a new PROGRESS then
  // replaces its job's unsent one. Below it every event is kept, so watchers that keep up
  // all see the same sequences. The queue stays bounded either way.
  size_t conflate_after = 16;
  // Events read from the store per step while a watcher catches up.
  size_t catch_up_batch = 256;
  // Threads that wake idle watchers when an event is published.
  int fanout_threads = 2;
  // Open watch streams the server accepts; more get RESOURCE_EXHAUSTED.
  size_t max_watchers = 100000;
  // Open watch streams of one live job; more get RESOURCE_EXHAUSTED. (The gateway shares
  // one stream per job among all its browsers.)
  size_t max_watchers_per_job = 10000;
  // A WatchJobs snapshot holds every RUNNING job but at most this many QUEUED ones (the
  // newest): a deep queue is listed with ListJobs, page by page.
  size_t snapshot_queued_limit = 1000;
};

}  // namespace jobstream::watch
