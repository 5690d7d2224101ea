// The gateway's route handlers, one per way of asking (see DESIGN.md's gateway table).
// Each runs on its session's strand, makes its calls upstream, and answers through the
// session. Grouped by file:
//   job_handlers.cc     the REST calls: submit, get, list, types, cancel, delete, health
//   wait_handlers.cc    waiting for the end without a stream: :wait and /result
//   stream_handlers.cc  SSE: one job's events, many jobs' events, submit-and-stream
//   artifact_handler.cc artifact downloads: Range, ETag, HEAD
//   session_handler.cc  /v1/session: the cookie that carries a browser's token
//   schedule_handlers.cc /v1/schedules: ScheduleService's calls
#pragma once

#include <optional>
#include <string>

#include "gateway/routes.h"
#include "gateway/session.h"
#include "jobstream/v1/jobs.pb.h"

namespace jobstream::gateway {

void Submit(const SessionPtr& session);
// POST /v1/jobs:batch: a SubmitBatchRequest as JSON; 202 with the parent's Location.
void SubmitBatch(const SessionPtr& session);
void GetJob(const SessionPtr& session, const std::string& job_id);
void ListJobs(const SessionPtr& session, const Route& route);
void ListTypes(const SessionPtr& session);
// POST /v1/types/{type}:pause (a body {"reason": "…"}, or none) and :resume.
void PauseType(const SessionPtr& session, const Route& route);
void CancelJob(const SessionPtr& session, const std::string& job_id);
void RetryJob(const SessionPtr& session, const std::string& job_id);
void JobStats(const SessionPtr& session);
// BulkCancel, BulkRetry or BulkDelete, by the route's kind.
void BulkJobs(const SessionPtr& session, RouteKind kind);
void DeleteJob(const SessionPtr& session, const std::string& job_id);
void Health(const SessionPtr& session);
void SessionRoute(const SessionPtr& session, const Route& route);
void Asset(const SessionPtr& session, const std::string& path);

void WaitJob(const SessionPtr& session, const Route& route);
void JobResult(const SessionPtr& session, const std::string& job_id);

void JobEvents(const SessionPtr& session, const Route& route);
void AllEvents(const SessionPtr& session, const Route& route);
void SubmitAndStream(const SessionPtr& session);

void GetArtifact(const SessionPtr& session, const Route& route);

// Any of the /v1/schedules routes.
void ScheduleRoute(const SessionPtr& session, const Route& route);

// The SubmitRequest of a POST /v1/jobs (its JSON body and Idempotency-Key header), or
// nullopt after replying 400.
std::optional<v1::SubmitRequest> ParseSubmit(Session& session);

// The route's pageSize (0 when absent), or nullopt after replying 400.
std::optional<int> PageSizeParam(Session& session, const Route& route);

// "/v1/jobs/{id}": the Location of a job.
std::string JobPath(const std::string& job_id);

}  // namespace jobstream::gateway
