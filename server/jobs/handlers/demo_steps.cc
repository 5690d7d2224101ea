#include "server/jobs/handlers/demo_steps.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "jobstream/v1/artifacts.h"

namespace jobstream::jobs {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

constexpr int kMaxSteps = 1000;
constexpr size_t kMaxStepName = 100;
constexpr double kMaxStepMs = 3'600'000;  // one hour
constexpr double kMaxTicks = 1000;

struct Plan {
  std::vector<std::string> steps = {"fetch", "render", "upload"};
  int64_t step_ms = 500;
  int ticks = 5;
  std::string fail_at;
  bool retryable = false;
  // An artifact attached at the end: DemoArtifactByte(i) for i in 0..bytes.
  std::string artifact_name;
  std::string artifact_type;
  int64_t artifact_bytes = 0;
};

constexpr double kMaxArtifactBytes = 1ull << 40;

absl::StatusOr<int64_t> WholeNumber(const Struct& params, const char* name, double max,
                                    absl::string_view prefix = "params.") {
  const Value& v = params.fields().at(name);
  if (v.kind_case() != Value::kNumberValue || v.number_value() < 0 ||
      v.number_value() > max || std::floor(v.number_value()) != v.number_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, name, " must be a whole number from 0 to ", max));
  }
  return static_cast<int64_t>(v.number_value());
}

absl::StatusOr<Plan> ParsePlan(const Struct& params) {
  Plan plan;
  for (const auto& [key, value] : params.fields()) {
    if (key == "steps") {
      if (value.kind_case() != Value::kListValue) {
        return absl::InvalidArgumentError("params.steps must be a list of step names");
      }
      const auto& list = value.list_value().values();
      if (list.empty() || list.size() > kMaxSteps) {
        return absl::InvalidArgumentError(
            absl::StrCat("params.steps must hold 1 to ", kMaxSteps, " names"));
      }
      plan.steps.clear();
      for (const Value& name : list) {
        if (name.kind_case() != Value::kStringValue || name.string_value().empty() ||
            name.string_value().size() > kMaxStepName) {
          return absl::InvalidArgumentError(absl::StrCat(
              "params.steps must hold non-empty strings of at most ", kMaxStepName, " bytes"));
        }
        plan.steps.push_back(name.string_value());
      }
    } else if (key == "step_ms") {
      auto ms = WholeNumber(params, "step_ms", kMaxStepMs);
      if (!ms.ok()) return ms.status();
      plan.step_ms = *ms;
    } else if (key == "ticks") {
      auto ticks = WholeNumber(params, "ticks", kMaxTicks);
      if (!ticks.ok()) return ticks.status();
      plan.ticks = static_cast<int>(*ticks);
    } else if (key == "fail_at") {
      if (value.kind_case() != Value::kStringValue) {
        return absl::InvalidArgumentError("params.fail_at must be a step name");
      }
      plan.fail_at = value.string_value();
    } else if (key == "retryable") {
      if (value.kind_case() != Value::kBoolValue) {
        return absl::InvalidArgumentError("params.retryable must be true or false");
      }
      plan.retryable = value.bool_value();
    } else if (key == "artifact") {
      // {"name": "out.bin", "bytes": 1024, "content_type": "…"}
      if (value.kind_case() != Value::kStructValue) {
        return absl::InvalidArgumentError(
            "params.artifact must be {\"name\": …, \"bytes\": …, \"content_type\": …}");
      }
      const Struct& a = value.struct_value();
      for (const auto& [field, v] : a.fields()) {
        if (field == "name" && v.kind_case() == Value::kStringValue) {
          if (absl::Status s = v1::ValidateArtifactName(v.string_value()); !s.ok()) {
            return absl::InvalidArgumentError(absl::StrCat("params.artifact.name: ", s.message()));
          }
          plan.artifact_name = v.string_value();
        } else if (field == "content_type" && v.kind_case() == Value::kStringValue) {
          if (absl::Status s = v1::ValidateContentType(v.string_value()); !s.ok()) {
            return absl::InvalidArgumentError(
                absl::StrCat("params.artifact.content_type: ", s.message()));
          }
          plan.artifact_type = v.string_value();
        } else if (field == "bytes") {
          auto bytes = WholeNumber(a, "bytes", kMaxArtifactBytes, "params.artifact.");
          if (!bytes.ok()) return bytes.status();
          plan.artifact_bytes = *bytes;
        } else {
          return absl::InvalidArgumentError(absl::StrCat(
              "params.artifact.", field, " is not known or not a string (known: name, bytes, "
              "content_type)"));
        }
      }
      if (plan.artifact_name.empty()) {
        return absl::InvalidArgumentError("params.artifact.name is required");
      }
    } else if (key == "batch") {
      // A batch's counts, given to its `then` job: shown, not used.
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "params.", key, " is not a demo.steps parameter (known: steps, step_ms, ticks, "
          "fail_at, retryable, artifact, batch)"));
    }
  }
  if (!plan.fail_at.empty() &&
      std::find(plan.steps.begin(), plan.steps.end(), plan.fail_at) == plan.steps.end()) {
    return absl::InvalidArgumentError(absl::StrCat("params.fail_at \"", plan.fail_at,
                                                   "\" is not one of the steps: ",
                                                   absl::StrJoin(plan.steps, ", ")));
  }
  return plan;
}

}  // namespace

absl::Status DemoStepsHandler::Validate(const Struct& params) const {
  return ParsePlan(params).status();
}

absl::StatusOr<Value> DemoStepsHandler::Run(JobContext& ctx) const {
  absl::StatusOr<Plan> plan = ParsePlan(ctx.params());
  if (!plan.ok()) return plan.status();
  const int n = static_cast<int>(plan->steps.size());
  const absl::Duration tick =
      absl::Milliseconds(plan->step_ms) / std::max(plan->ticks, 1);
  for (int i = 0; i < n; ++i) {
    const std::string& name = plan->steps[i];
    ctx.Step(name, i + 1, n, static_cast<double>(i) / n);
    if (name == plan->fail_at) {
      std::string why = absl::StrCat("step \"", name, "\" failed (fail_at)");
      return plan->retryable ? absl::UnavailableError(why) : absl::AbortedError(why);
    }
    if (plan->ticks == 0 && !ctx.SleepFor(absl::Milliseconds(plan->step_ms))) {
      return absl::CancelledError("cancelled");
    }
    for (int t = 1; t <= plan->ticks; ++t) {
      if (!ctx.SleepFor(tick)) return absl::CancelledError("cancelled");
      ctx.Progress((i + static_cast<double>(t) / plan->ticks) / n,
                   absl::StrCat(name, " ", t, "/", plan->ticks));
    }
  }
  if (ctx.Cancelled()) return absl::CancelledError("cancelled");
  if (!plan->artifact_name.empty()) {
    auto upload = ctx.CreateArtifact(plan->artifact_name, plan->artifact_type);
    if (!upload.ok()) return upload.status();
    std::string piece;
    for (int64_t at = 0; at < plan->artifact_bytes;) {
      const int64_t n = std::min<int64_t>(plan->artifact_bytes - at, 64 << 10);
      piece.resize(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) piece[i] = DemoArtifactByte(at + i);
      if (absl::Status s = (*upload)->Append(piece); !s.ok()) return s;
      at += n;
      if (ctx.Cancelled()) return absl::CancelledError("cancelled");
    }
    if (auto artifact = (*upload)->Commit(); !artifact.ok()) return artifact.status();
  }
  Value result;
  (*result.mutable_struct_value()->mutable_fields())["steps"].set_number_value(n);
  return result;
}

}  // namespace jobstream::jobs
