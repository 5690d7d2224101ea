// demo.steps: walks through named steps, sleeping step_ms in each and reporting `ticks`
// PROGRESS events per step. The demo and test workhorse. Params, all optional:
//   {"steps": ["fetch", "render", "upload"], "step_ms": 500, "ticks": 5,
//    "fail_at": "render", "retryable": false,
//    "artifact": {"name": "out.bin", "bytes": 1024, "content_type": "…"}}
// Result: {"steps": N}. With fail_at it fails when that step starts (retryable: the
// failure is UNAVAILABLE and is retried while attempts remain). With artifact it attaches
// a file of DemoArtifactByte(0..bytes) after the last step, streamed, never whole.
#pragma once

#include "server/jobs/handler.h"

namespace jobstream::jobs {

// Byte i of demo.steps' artifact: a pattern a reader can check without a copy.
inline char DemoArtifactByte(int64_t i) { return static_cast<char>((i * 131 + i / 251) & 0xff); }

class DemoStepsHandler : public Handler {
 public:
  static constexpr char kType[] = "demo.steps";
  absl::Status Validate(const google::protobuf::Struct& params) const override;
  absl::StatusOr<google::protobuf::Value> Run(JobContext& ctx) const override;
};

}  // namespace jobstream::jobs
