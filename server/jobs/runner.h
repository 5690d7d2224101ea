// Runner: a bounded pool of threads running in-server handlers (BUILTIN and EXEC types).
// Each thread acquires a ready job from the JobManager, runs its handler with a JobContext
// that reports back to the manager, and finishes the attempt with the outcome.
#pragma once

#include <thread>
#include <vector>

#include "server/jobs/job_backend.h"
#include "server/jobs/job_types.h"

namespace jobstream::jobs {

class Runner {
 public:
  Runner(JobBackend* manager, const JobTypes* types, int threads);
  ~Runner();  // Stop()

  void Start();
  // Tells running handlers to stop (their jobs are requeued) and joins the threads.
  void Stop();

 private:
  void Loop();

  JobBackend* const manager_;
  const JobTypes* const types_;
  const int thread_count_;
  std::vector<std::thread> threads_;
};

}  // namespace jobstream::jobs
