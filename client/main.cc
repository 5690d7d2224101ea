// jobstream: the command-line client. See Usage() or `jobstream COMMAND --help`.
//
// Exit codes: 0 success (for watch: the job SUCCEEDED), 1 the job FAILED or the server
// refused the call, 2 the job was CANCELLED, 3 usage or connection error.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/strings/ascii.h"
#include "absl/time/clock.h"
#include "client/job_client.h"
#include "client/worker.h"
#include "jobstream/v1/job_states.h"
#include "jobstream/v1/schedules.grpc.pb.h"
#include "jobstream/v1/artifacts.h"
#include "jobstream/v1/auth_config.h"
#include "openssl/rand.h"
#include "absl/strings/escaping.h"
#include "server/exec/child_process.h"
#include "google/protobuf/util/json_util.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051",
          "jobstream-server address, or several comma-separated IP:PORTs sharing one store");
ABSL_FLAG(std::string, server_ca, "", "PEM CA to trust: talk to the server over TLS");
ABSL_FLAG(std::string, client_cert, "", "PEM client certificate, for a server that asks (mTLS)");
ABSL_FLAG(std::string, client_key, "", "PEM private key of --client_cert");
ABSL_FLAG(std::string, token_file, "",
          "file whose first line is the bearer token (default: $JOBSTREAM_TOKEN, if set)");
ABSL_FLAG(std::string, params, "", "submit, schedule: job params as a JSON object");
ABSL_FLAG(std::string, request_id, "", "submit, batch: idempotency key");
ABSL_FLAG(std::string, then_type, "", "batch: the job to run once every child has ended");
ABSL_FLAG(std::string, then_params, "", "batch: the --then_type job's params as a JSON object");
ABSL_FLAG(std::vector<std::string>, labels, {}, "submit/list: labels as key=value,key=value");
ABSL_FLAG(int, priority, 0, "submit: -1000..1000, higher runs first");
ABSL_FLAG(int, max_attempts, 0, "submit: attempts allowed (0: the type's default)");
ABSL_FLAG(bool, watch, false, "submit: then watch the job to its end");
ABSL_FLAG(std::vector<std::string>, after, {},
          "watch: start after this sequence; submit: run after these jobs (ids) have succeeded");
ABSL_FLAG(std::string, unique_key, "",
          "submit: one job per key: while a job holding it is live (--unique_for=active) or "
          "for --unique_for from its creation, submitting again answers that job");
ABSL_FLAG(std::string, unique_for, "", "submit: how long a --unique_key is held: a duration, or active");
ABSL_FLAG(std::string, concurrency_key, "",
          "submit, schedule: the key (say, a customer id) its type's keyConcurrency and "
          "keyRate count the job under; keys take turns");
ABSL_FLAG(std::string, on_dependency_failure, "",
          "submit: cancel, fail or run when a job of --after does not succeed (default cancel)");
ABSL_FLAG(bool, json, false, "print one JSON object per line instead of text");
ABSL_FLAG(std::string, type, "",
          "list: only jobs of this type; work: the types to take (a,b); schedule: the job type");
ABSL_FLAG(std::vector<std::string>, state, {}, "list: only jobs in these states");
ABSL_FLAG(int, page_size, 20, "list: jobs per page (1..1000)");
ABSL_FLAG(std::string, page_token, "", "list: continue from a previous page");
ABSL_FLAG(absl::Duration, reconnect_timeout, absl::Seconds(60),
          "watch: give up after the server is unreachable this long");
ABSL_FLAG(int, concurrency, 1, "work: jobs run at once (1..256)");
ABSL_FLAG(std::string, worker_id, "", "work: name shown on jobs (default HOST:PID)");
ABSL_FLAG(absl::Duration, lease_duration, absl::ZeroDuration(),
          "work: lease length (default: the type's)");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(30),
          "work: on SIGTERM, how long running jobs may finish before they are handed back");
ABSL_FLAG(std::string, o, "", "fetch: write to this file (- for stdout; default: NAME)");
ABSL_FLAG(std::string, tenant, "", "token: the tenant the new token's jobs belong to");
ABSL_FLAG(std::vector<std::string>, roles, {},
          "token: the new token's roles, among submit, read, work, admin, metrics");
ABSL_FLAG(absl::Duration, kill_grace, absl::Seconds(10),
          "work: after SIGTERM to a program, SIGKILL follows this long after");
ABSL_FLAG(std::string, cron, "",
          "schedule: a five-field cron expression (or @daily, @hourly, ...)");
ABSL_FLAG(std::string, time_zone, "", "schedule: the cron expression's IANA time zone (default UTC)");
ABSL_FLAG(std::string, every, "", "schedule: an interval in whole seconds instead, e.g. 90s, 15m, 1h");
ABSL_FLAG(std::string, jitter, "", "schedule: delay each fire by up to this (at most 1h)");
ABSL_FLAG(std::string, overlap, "", "schedule: skip, queue_one or allow (default skip)");
ABSL_FLAG(std::string, catch_up, "",
          "schedule: skip_missed, run_once or run_all (default skip_missed)");
ABSL_FLAG(int, catch_up_limit, 0, "schedule: run_all runs at most this many missed fires (1..1000)");
ABSL_FLAG(bool, paused, false, "schedule create: made paused");
ABSL_FLAG(std::string, reason, "", "pause, cancel, retry: why, kept with the action");
ABSL_FLAG(bool, as_new, false, "retry: replay as a new job (with --params: edited)");

namespace {

using jobstream::v1::Job;
using jobstream::v1::JobEvent;

constexpr int kExitOk = 0, kExitFailed = 1, kExitCancelled = 2, kExitUsage = 3;

const std::map<std::string, std::string>& CommandHelp() {
  static const auto* help = new std::map<std::string, std::string>{
      {"submit",
       "jobstream submit TYPE [--params=JSON] [--request_id=ID] [--labels=k=v,...]\n"
       "                 [--priority=N] [--max_attempts=N] [--after=ID,...]\n"
       "                 [--on_dependency_failure=cancel|fail|run]\n"
       "                 [--unique_key=K --unique_for=DURATION|active]\n"
       "                 [--concurrency_key=K] [--watch] [--json]\n"
       "  Creates a job and prints its id (or the job as JSON with --json). With --after,\n"
       "  it waits (WAITING) until those jobs have succeeded. With --unique_key, a job\n"
       "  holding the key is the answer instead (\"deduplicated\": true). With --watch,\n"
       "  follows it to its end; the exit code is then the job's outcome."},
      {"batch",
       "jobstream batch FILE [--then_type=T [--then_params=JSON]] [--labels=k=v,...]\n"
       "                [--request_id=ID] [--watch] [--json]\n"
       "  Submits a batch: one child per line of FILE (- for stdin), each a Submit as JSON,\n"
       "  e.g. {\"type\": \"render\", \"params\": {\"frame\": 1}}; at most 10,000, all or none.\n"
       "  Prints the parent's id; watch it for the batch's progress (--watch does). With\n"
       "  --then_type, that job runs once every child has ended (its params get \"batch\":\n"
       "  the counts). The children: jobstream list --labels=jobstream/batch=ID."},
      {"status", "jobstream status ID [--json]\n  Prints the job as JSON."},
      {"watch",
       "jobstream watch ID [--after=N] [--json]\n"
       "  Follows the job to its end: a live bar on a terminal, otherwise (or with --json)\n"
       "  one JSON event per line. Reconnects and resumes if the server goes away.\n"
       "  Exit code: 0 succeeded, 1 failed, 2 cancelled, 3 usage or connection error."},
      {"list",
       "jobstream list [--state=QUEUED,...] [--type=T] [--labels=k=v] [--page_size=N]\n"
       "               [--page_token=TOKEN] [--json]\n"
       "  Lists jobs, newest first."},
      {"cancel", "jobstream cancel ID [--reason=WHY] [--json]\n  Cancels a queued or running job."},
      {"retry",
       "jobstream retry ID [--reason=WHY] [--as_new [--params=JSON]] [--json]\n"
       "  Runs a FAILED or CANCELLED job again under its id (a new series of attempts), or\n"
       "  with --as_new replays any ended job as a new one linked to it (label\n"
       "  jobstream/replay_of=ID), with --params instead of its own. Prints the job."},
      {"delete", "jobstream delete ID\n  Removes a finished job and its events."},
      {"fetch",
       "jobstream fetch ID NAME [-o FILE]\n"
       "  Downloads artifact NAME of job ID into FILE (default: NAME; - for stdout), with a\n"
       "  progress bar on a terminal. Resumes after a broken connection and checks the\n"
       "  sha256 before the file takes its name."},
      {"whoami",
       "jobstream whoami [--json]\n"
       "  Prints the name, tenant and roles the server gives this token (--token_file or\n"
       "  $JOBSTREAM_TOKEN), or says the server has no access control."},
      {"token",
       "jobstream token NAME --tenant=T --roles=submit,read[,work,admin]\n"
       "  Makes a new random token (offline): prints it once, and the entry for the\n"
       "  server's --auth_tokens file, which holds only its sha256."},
      {"schedule",
       "jobstream schedule create|update ID (--cron=EXPR [--time_zone=ZONE] | --every=DUR)\n"
       "                   --type=T [--params=JSON] [--labels=k=v,...] [--priority=N]\n"
       "                   [--max_attempts=N] [--concurrency_key=K] [--jitter=DUR]\n"
       "                   [--overlap=skip|queue_one|allow]\n"
       "                   [--catch_up=skip_missed|run_once|run_all] [--catch_up_limit=N]\n"
       "                   [--paused] [--json]\n"
       "jobstream schedule get|pause|resume|trigger|delete ID\n"
       "jobstream schedule list [--page_size=N] [--page_token=TOKEN] [--json]\n"
       "  Jobs submitted on a timetable. Each fire is a job labelled jobstream/schedule=ID\n"
       "  (list them: jobstream list --labels=jobstream/schedule=ID). trigger submits one\n"
       "  now and prints its id."},
      {"types",
       "jobstream types [--json]\n"
       "  Lists the declared job types: how each runs, queued and running jobs, workers."},
      {"pause",
       "jobstream pause TYPE [--reason=TEXT] [--json]\n"
       "jobstream resume TYPE [--json]\n"
       "  Pauses a job type (admin): its queued jobs wait, workers and the server start\n"
       "  none, running ones go on; resume lets them go. Every server on the store obeys."},
      {"work",
       "jobstream work --type=T[,T2...] [--concurrency=N] [--worker_id=ID] -- CMD ARGS...\n"
       "  Runs as an external worker: leases jobs of those types and runs CMD for each,\n"
       "  with the params as JSON on stdin. CMD prints lines such as\n"
       "    {\"step\": \"render\", \"fraction\": 0.4, \"message\": \"frame 10/24\"}\n"
       "  and {\"result\": ...}; exit 0 completes the job, anything else fails it with the\n"
       "  tail of stderr. Every file CMD writes into $JOBSTREAM_OUTPUT_DIR becomes an\n"
       "  artifact of the job. A cancel stops CMD. SIGTERM: no new jobs; running ones get\n"
       "  --drain_timeout to finish, then are stopped and handed back."},
  };
  return *help;
}

std::string Usage() {
  std::string usage =
      "jobstream [--server=HOST:PORT] [--server_ca=PEM [--client_cert=PEM --client_key=PEM]]\n"
      "          [--token_file=FILE] COMMAND ARGS...\n\n"
      "A server with --auth_tokens wants a token: --token_file, or $JOBSTREAM_TOKEN.\n\n"
      "Commands (jobstream COMMAND --help for each):\n";
  for (const auto& [name, help] : CommandHelp()) {
    absl::StrAppend(&usage, "  ", help.substr(0, help.find('\n')), "\n");
  }
  return usage;
}

// The channel to the server the flags describe (plaintext, TLS, or mTLS); exits with a
// usage error when a certificate flag is wrong.
std::shared_ptr<grpc::Channel> ServerChannel(const std::string& server);

int UsageError(const std::string& message) {
  std::cerr << "jobstream: " << message << "\n\n" << Usage();
  return kExitUsage;
}

// Server errors: a connection problem is 3, anything the server said is 1.
int CallError(const absl::Status& s) {
  std::cerr << "jobstream: " << absl::StatusCodeToString(s.code()) << ": " << s.message()
            << "\n";
  return s.code() == absl::StatusCode::kUnavailable ||
                 s.code() == absl::StatusCode::kDeadlineExceeded
             ? kExitUsage
             : kExitFailed;
}

std::string ToJson(const google::protobuf::Message& m, bool pretty = false) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = pretty;
  (void)google::protobuf::util::MessageToJsonString(m, &out, options);
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

bool Interactive() { return isatty(STDOUT_FILENO) && !absl::GetFlag(FLAGS_json); }

int OutcomeExit(const Job& job) {
  switch (job.state()) {
    case Job::SUCCEEDED: return kExitOk;
    case Job::CANCELLED: return kExitCancelled;
    default: return kExitFailed;
  }
}

absl::Status ParseLabels(google::protobuf::Map<std::string, std::string>* labels) {
  for (const std::string& pair : absl::GetFlag(FLAGS_labels)) {
    std::vector<std::string> kv = absl::StrSplit(pair, absl::MaxSplits('=', 1));
    if (kv.size() != 2 || kv[0].empty()) {
      return absl::InvalidArgumentError("--labels takes key=value pairs, not \"" + pair + "\"");
    }
    (*labels)[kv[0]] = kv[1];
  }
  return absl::OkStatus();
}

// A JSON-object flag (--params, --then_params) into `out`; empty leaves it empty.
absl::Status StructFlag(const std::string& flag, const std::string& text,
                        google::protobuf::Struct* out) {
  if (text.empty()) return absl::OkStatus();
  auto s = google::protobuf::util::JsonStringToMessage(text, out);
  if (s.ok()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, " must be a JSON object: ", s.message().as_string()));
}

// --flag=TEXT as a Duration, or a usage error.
absl::Status DurationFlag(const std::string& flag, const std::string& text,
                          google::protobuf::Duration* out) {
  absl::Duration d;
  if (!absl::ParseDuration(text, &d) || d < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, " takes a duration such as 90s, 15m or 1h, not \"", text, "\""));
  }
  *out = jobstream::v1::ToProto(d);
  return absl::OkStatus();
}

// The live bar: [#####-----]  50%  step 2/3 render · render 3/5  00:01.2
class Bar {
 public:
  void Draw(const JobEvent& event) {
    const Job& job = event.status();
    const auto& p = job.progress();
    constexpr int kWidth = 24;
    const int filled = static_cast<int>(p.fraction() * kWidth + 0.5);
    std::string line = absl::StrFormat(
        "\r\x1b[K[%s%s] %3d%%  %-9s", std::string(filled, '#'), std::string(kWidth - filled, '-'),
        static_cast<int>(p.fraction() * 100 + 0.5), Job::State_Name(job.state()));
    if (p.step_count() > 0 || !p.step().empty()) {
      absl::StrAppendFormat(&line, "  step %d/%d %s", p.step_index(), p.step_count(), p.step());
    }
    if (!p.message().empty()) absl::StrAppend(&line, " · ", p.message());
    if (job.state() == Job::WAITING) {
      absl::StrAppend(&line, "  for ", absl::StrJoin(job.waiting_for(), ", "));
    }
    absl::StrAppendFormat(&line, "  %s", Elapsed());
    std::cout << line << std::flush;
  }
  void End(const Job& job) {
    std::cout << "\n" << Job::State_Name(job.state()) << " after " << Elapsed();
    if (job.state() == Job::SUCCEEDED) std::cout << "  result: " << ToJson(job.result());
    if (job.has_error()) std::cout << "  error: " << job.error().message();
    std::cout << std::endl;
  }

 private:
  std::string Elapsed() const {
    const double s = absl::ToDoubleSeconds(absl::Now() - start_);
    return absl::StrFormat("%02d:%04.1f", static_cast<int>(s) / 60, s - 60 * (static_cast<int>(s) / 60));
  }
  const absl::Time start_ = absl::Now();
};

int Watch(jobstream::client::JobClient& client, const std::string& id, int64_t after) {
  const bool interactive = Interactive();
  Bar bar;
  jobstream::client::WatchOptions options;
  options.reconnect_timeout = absl::GetFlag(FLAGS_reconnect_timeout);
  options.on_reconnect = [&](const absl::Status& why) {
    if (interactive) std::cout << "\r\x1b[K(reconnecting: " << why.message() << ")" << std::flush;
  };
  auto job = client.Watch(id, after, [&](const JobEvent& event) {
    if (interactive) bar.Draw(event); else std::cout << ToJson(event) << std::endl;
  }, options);
  if (!job.ok()) {
    if (interactive) std::cout << "\n";
    return CallError(job.status());
  }
  if (interactive) bar.End(*job);
  return OutcomeExit(*job);
}

int Submit(jobstream::client::JobClient& client, const std::vector<std::string>& args) {
  if (args.size() != 1) return UsageError("submit takes one TYPE");
  jobstream::v1::SubmitRequest request;
  request.set_type(args[0]);
  if (auto s = StructFlag("params", absl::GetFlag(FLAGS_params), request.mutable_params());
      !s.ok()) {
    return UsageError(std::string(s.message()));
  }
  request.set_request_id(absl::GetFlag(FLAGS_request_id));
  request.set_priority(absl::GetFlag(FLAGS_priority));
  request.set_max_attempts(absl::GetFlag(FLAGS_max_attempts));
  if (auto s = ParseLabels(request.mutable_labels()); !s.ok()) {
    return UsageError(std::string(s.message()));
  }
  for (const std::string& id : absl::GetFlag(FLAGS_after)) request.add_depends_on(id);
  const std::string policy = absl::AsciiStrToUpper(absl::GetFlag(FLAGS_on_dependency_failure));
  Job::OnDependencyFailure on_failure = Job::ON_DEPENDENCY_FAILURE_UNSPECIFIED;
  if (!policy.empty() && (!Job::OnDependencyFailure_Parse(policy, &on_failure) ||
                          on_failure == Job::ON_DEPENDENCY_FAILURE_UNSPECIFIED)) {
    return UsageError("--on_dependency_failure takes cancel, fail or run");
  }
  request.set_on_dependency_failure(on_failure);
  request.set_unique_key(absl::GetFlag(FLAGS_unique_key));
  request.set_concurrency_key(absl::GetFlag(FLAGS_concurrency_key));
  if (const std::string held = absl::GetFlag(FLAGS_unique_for); held == "active") {
    request.set_unique_while(Job::ACTIVE);
  } else if (!held.empty()) {
    if (auto s = DurationFlag("unique_for", held, request.mutable_unique_for()); !s.ok()) {
      return UsageError(std::string(s.message()));
    }
  }
  auto job = client.Submit(request);
  if (!job.ok()) return CallError(job.status());
  if (Interactive()) std::cout << job->id() << std::endl;
  else std::cout << ToJson(*job) << std::endl;
  return absl::GetFlag(FLAGS_watch) ? Watch(client, job->id(), 0) : kExitOk;
}

int Batch(jobstream::client::JobClient& client, const std::vector<std::string>& args) {
  if (args.size() != 1) return UsageError("batch takes one FILE (- for stdin)");
  std::ifstream file;
  if (args[0] != "-") {
    file.open(args[0]);
    if (!file) return UsageError("cannot read " + args[0] + ": " + std::strerror(errno));
  }
  std::istream& in = args[0] == "-" ? std::cin : file;
  jobstream::v1::SubmitBatchRequest request;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    auto s = google::protobuf::util::JsonStringToMessage(line, request.add_children());
    if (!s.ok()) {
      return UsageError(absl::StrCat(args[0], ":", number,
                                     ": not a Submit as JSON: ", s.message().as_string()));
    }
  }
  if (const std::string type = absl::GetFlag(FLAGS_then_type); !type.empty()) {
    request.mutable_then()->set_type(type);
    if (auto s = StructFlag("then_params", absl::GetFlag(FLAGS_then_params),
                            request.mutable_then()->mutable_params());
        !s.ok()) {
      return UsageError(std::string(s.message()));
    }
  } else if (!absl::GetFlag(FLAGS_then_params).empty()) {
    return UsageError("--then_params needs --then_type");
  }
  request.set_request_id(absl::GetFlag(FLAGS_request_id));
  if (auto s = ParseLabels(request.mutable_labels()); !s.ok()) {
    return UsageError(std::string(s.message()));
  }
  auto batch = client.SubmitBatch(request);
  if (!batch.ok()) return CallError(batch.status());
  const std::string& id = batch->parent().id();
  if (Interactive()) {
    std::cout << id << "  (" << batch->child_ids_size() << " children)" << std::endl;
  } else {
    std::cout << ToJson(*batch) << std::endl;
  }
  return absl::GetFlag(FLAGS_watch) ? Watch(client, id, 0) : kExitOk;
}

int List(jobstream::client::JobClient& client) {
  jobstream::v1::ListJobsRequest request;
  for (const std::string& name : absl::GetFlag(FLAGS_state)) {
    Job::State state;
    if (!Job::State_Parse(name, &state) || state == Job::STATE_UNSPECIFIED) {
      return UsageError("--state takes WAITING, QUEUED, RUNNING, SUCCEEDED, FAILED or CANCELLED");
    }
    request.add_states(state);
  }
  request.set_type(absl::GetFlag(FLAGS_type));
  request.set_page_size(absl::GetFlag(FLAGS_page_size));
  request.set_page_token(absl::GetFlag(FLAGS_page_token));
  if (auto s = ParseLabels(request.mutable_labels()); !s.ok()) {
    return UsageError(std::string(s.message()));
  }
  auto response = client.List(request);
  if (!response.ok()) return CallError(response.status());
  const bool interactive = Interactive();
  if (interactive) {
    std::cout << absl::StrFormat("%-26s  %-9s  %-16s  %4s  %s\n", "ID", "STATE", "TYPE", "%",
                                 "STEP");
  }
  for (const Job& job : response->jobs()) {
    if (!interactive) {
      std::cout << ToJson(job) << "\n";
      continue;
    }
    std::cout << absl::StrFormat("%-26s  %-9s  %-16s  %3d%%  %s\n", job.id(),
                                 Job::State_Name(job.state()), job.type(),
                                 static_cast<int>(job.progress().fraction() * 100 + 0.5),
                                 job.progress().step());
  }
  if (!response->next_page_token().empty()) {
    std::cerr << "more: --page_token=" << response->next_page_token() << "\n";
  }
  return kExitOk;
}

int Fetch(jobstream::client::JobClient& client, const std::vector<std::string>& args) {
  if (args.size() != 2) return UsageError("fetch takes a job ID and an artifact NAME");
  const std::string& id = args[0];
  const std::string& name = args[1];
  std::string path = absl::GetFlag(FLAGS_o);
  if (path.empty()) {
    // The name is checked by the server too; never write outside the current directory.
    if (auto s = jobstream::v1::ValidateArtifactName(name); !s.ok()) {
      return UsageError(std::string(s.message()));
    }
    path = name;
  }
  const bool to_stdout = path == "-";
  const std::string partial = to_stdout ? "" : path + ".partial";
  std::FILE* out = to_stdout ? stdout : std::fopen(partial.c_str(), "wb");
  if (out == nullptr) return UsageError("cannot write " + partial + ": " + std::strerror(errno));
  const bool bar = isatty(STDERR_FILENO) && !to_stdout;
  const absl::Time start = absl::Now();
  absl::Time drawn = absl::InfinitePast();
  int64_t total = 0, received = 0;
  jobstream::v1::Sha256 sha;
  auto draw = [&](bool last) {
    const absl::Time now = absl::Now();
    if (!bar || (!last && now - drawn < absl::Milliseconds(100))) return;
    drawn = now;
    constexpr int kWidth = 24;
    const double fraction = total > 0 ? static_cast<double>(received) / total : 1.0;
    const int filled = static_cast<int>(fraction * kWidth + 0.5);
    const double seconds = std::max(1e-3, absl::ToDoubleSeconds(now - start));
    std::cerr << absl::StrFormat("\r\x1b[K[%s%s] %3d%%  %.1f / %.1f MiB  %.1f MiB/s",
                                 std::string(filled, '#'), std::string(kWidth - filled, '-'),
                                 static_cast<int>(fraction * 100 + 0.5), received / 1048576.0,
                                 total / 1048576.0, received / 1048576.0 / seconds)
              << (last ? "\n" : "") << std::flush;
  };
  jobstream::client::WatchOptions options;
  options.reconnect_timeout = absl::GetFlag(FLAGS_reconnect_timeout);
  auto artifact = client.ReadArtifact(
      id, name, 0, [&](const jobstream::v1::Artifact& a) { total = a.size(); },
      [&](absl::string_view data) -> absl::Status {
        if (std::fwrite(data.data(), 1, data.size(), out) != data.size()) {
          return absl::DataLossError(absl::StrCat("writing ", path, ": ", std::strerror(errno)));
        }
        sha.Update(data);
        received += static_cast<int64_t>(data.size());
        draw(false);
        return absl::OkStatus();
      },
      options);
  const bool flushed = std::fflush(out) == 0 && (to_stdout || std::fclose(out) == 0);
  auto fail = [&](int code) {
    if (!to_stdout) std::remove(partial.c_str());
    return code;
  };
  if (!artifact.ok()) {
    if (bar) std::cerr << "\n";
    return fail(CallError(artifact.status()));
  }
  if (!flushed) {
    std::cerr << "jobstream: writing " << path << ": " << std::strerror(errno) << "\n";
    return fail(kExitFailed);
  }
  if (const std::string got = sha.HexDigest(); got != artifact->sha256()) {
    std::cerr << "jobstream: " << name << " arrived with sha256 " << got << ", not "
              << artifact->sha256() << "; nothing was kept\n";
    return fail(kExitFailed);
  }
  if (!to_stdout && std::rename(partial.c_str(), path.c_str()) != 0) {
    std::cerr << "jobstream: cannot rename " << partial << " to " << path << ": "
              << std::strerror(errno) << "\n";
    return fail(kExitFailed);
  }
  draw(true);
  if (!to_stdout) {
    if (Interactive()) {
      std::cout << path << "  " << artifact->size() << " bytes  " << artifact->content_type()
                << "  sha256 " << artifact->sha256() << std::endl;
    } else {
      std::cout << ToJson(*artifact) << std::endl;
    }
  }
  return kExitOk;
}

int WhoAmI(jobstream::client::JobClient& client) {
  auto identity = client.WhoAmI();
  if (!identity.ok()) return CallError(identity.status());
  if (!Interactive()) {
    std::cout << ToJson(*identity) << std::endl;
  } else if (!identity->auth_required()) {
    std::cout << "the server has no access control: anyone who reaches it may do anything\n";
  } else {
    std::cout << identity->name() << " (tenant " << identity->tenant()
              << "): " << absl::StrJoin(identity->roles(), ", ") << std::endl;
  }
  return kExitOk;
}

// A new token: 32 random bytes in hex. Only its sha256 goes in the server's file.
int NewToken(const std::vector<std::string>& args) {
  if (args.size() != 1) return UsageError("token takes the token's NAME");
  jobstream::v1::AuthToken entry;
  entry.set_name(args[0]);
  entry.set_tenant(absl::GetFlag(FLAGS_tenant));
  for (const std::string& role : absl::GetFlag(FLAGS_roles)) entry.add_roles(role);
  unsigned char random[32];
  if (RAND_bytes(random, sizeof(random)) != 1) {
    std::cerr << "jobstream: no randomness for a token\n";
    return kExitFailed;
  }
  const std::string token = absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(random), sizeof(random)));
  jobstream::v1::Sha256 digest;
  digest.Update(token);
  entry.set_sha256(digest.HexDigest());
  // Checked as the server would check it, so a typo shows now rather than at its start.
  jobstream::v1::AuthConfig config;
  *config.add_tokens() = entry;
  if (auto s = jobstream::v1::ParseAuthConfig(ToJson(config)).status(); !s.ok()) {
    return UsageError(std::string(s.message()));
  }
  if (!Interactive()) {
    std::cout << "{\"token\":\"" << token << "\",\"entry\":" << ToJson(entry) << "}"
              << std::endl;
    return kExitOk;
  }
  std::cout << "token (shown once; give it to " << entry.name() << "):\n  " << token
            << "\nentry for the server's --auth_tokens file (\"tokens\": [...]):\n  "
            << ToJson(entry) << std::endl;
  return kExitOk;
}

int PauseType(const std::string& server, const std::string& type, bool pause) {
  auto stub = jobstream::v1::JobService::NewStub(ServerChannel(server));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  jobstream::v1::JobTypeInfo info;
  grpc::Status status;
  if (pause) {
    jobstream::v1::PauseTypeRequest request;
    request.set_type(type);
    request.set_reason(absl::GetFlag(FLAGS_reason));
    status = stub->PauseType(&ctx, request, &info);
  } else {
    jobstream::v1::ResumeTypeRequest request;
    request.set_type(type);
    status = stub->ResumeType(&ctx, request, &info);
  }
  if (!status.ok()) return CallError(jobstream::client::FromGrpc(status));
  if (!Interactive()) {
    std::cout << ToJson(info) << "\n";
  } else {
    std::cout << info.name() << (pause ? " paused" : " resumed") << "; " << info.queued()
              << " queued, " << info.running() << " running\n";
  }
  return kExitOk;
}

// cancel and retry: an operator's call on one job, with --reason.
int JobAction(const std::string& command, const std::string& id) {
  auto stub = jobstream::v1::JobService::NewStub(ServerChannel(absl::GetFlag(FLAGS_server)));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  Job job;
  grpc::Status status;
  if (command == "cancel") {
    jobstream::v1::CancelJobRequest request;
    request.set_job_id(id);
    request.set_reason(absl::GetFlag(FLAGS_reason));
    status = stub->CancelJob(&ctx, request, &job);
  } else {
    jobstream::v1::RetryJobRequest request;
    request.set_job_id(id);
    request.set_reason(absl::GetFlag(FLAGS_reason));
    request.set_as_new(absl::GetFlag(FLAGS_as_new));
    if (!absl::GetFlag(FLAGS_params).empty()) {
      if (!request.as_new()) return UsageError("retry: --params is for a replay (--as_new)");
      if (auto s = StructFlag("params", absl::GetFlag(FLAGS_params), request.mutable_params());
          !s.ok()) {
        return UsageError(std::string(s.message()));
      }
    }
    status = stub->RetryJob(&ctx, request, &job);
  }
  if (!status.ok()) return CallError(jobstream::client::FromGrpc(status));
  std::cout << ToJson(job, Interactive()) << std::endl;
  return kExitOk;
}

int Types(const std::string& server) {
  auto stub = jobstream::v1::JobService::NewStub(ServerChannel(server));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  jobstream::v1::ListJobTypesResponse response;
  grpc::Status status = stub->ListJobTypes(&ctx, {}, &response);
  if (!status.ok()) return CallError(jobstream::client::FromGrpc(status));
  if (!Interactive()) {
    for (const auto& type : response.types()) std::cout << ToJson(type) << "\n";
    return kExitOk;
  }
  std::cout << absl::StrFormat("%-24s  %-8s  %7s  %7s  %7s  %s\n", "TYPE", "RUNS", "QUEUED",
                               "RUNNING", "WORKERS", "DESCRIPTION");
  for (const auto& type : response.types()) {
    std::string runner = jobstream::v1::JobTypeInfo::Runner_Name(type.runner());
    std::cout << absl::StrFormat(
        "%-24s  %-8s  %7d  %7d  %7s  %s\n", type.name(), absl::AsciiStrToLower(runner),
        type.queued(), type.running(),
        type.runner() == jobstream::v1::JobTypeInfo::EXTERNAL ? absl::StrCat(type.workers()) : "-",
        type.description());
    if (type.has_pause()) {
      std::cout << "  paused" << (type.pause().by().empty() ? "" : " by " + type.pause().by())
                << (type.pause().reason().empty() ? "" : ": " + type.pause().reason()) << "\n";
    }
    if (type.key_concurrency() == 0 && type.key_rate() == 0) continue;
    std::vector<std::string> limits, held;
    if (type.key_concurrency() > 0) limits.push_back(absl::StrCat("<=", type.key_concurrency(), " running"));
    if (type.key_rate() > 0) limits.push_back(absl::StrCat("<=", type.key_rate(), "/s"));
    for (const auto& key : type.keys_at_limit()) {
      held.push_back(absl::StrCat(key.key().empty() ? "(none)" : key.key(), " (", key.running(),
                                  " running, ", key.queued(), " queued)"));
    }
    if (type.keys_at_limit_count() > type.keys_at_limit_size()) {
      held.push_back(absl::StrCat(type.keys_at_limit_count() - type.keys_at_limit_size(), " more"));
    }
    std::cout << "    per key: " << absl::StrJoin(limits, ", ")
              << (held.empty() ? "" : "; at limit: ") << absl::StrJoin(held, ", ") << "\n";
  }
  return kExitOk;
}

int Work(const std::string& server, const std::vector<std::string>& command) {
  jobstream::client::WorkerOptions options;
  for (absl::string_view type : absl::StrSplit(absl::GetFlag(FLAGS_type), ',', absl::SkipEmpty())) {
    options.types.emplace_back(type);
  }
  if (options.types.empty()) return UsageError("work needs --type=T: the types to take");
  if (command.empty()) return UsageError("work needs a command after --");
  auto program = jobstream::exec::ResolveProgram(command[0]);
  if (!program.ok()) return UsageError(std::string(program.status().message()));
  options.argv = command;
  options.argv[0] = *program;
  options.concurrency = absl::GetFlag(FLAGS_concurrency);
  if (options.concurrency < 1 || options.concurrency > 256) {
    return UsageError("--concurrency must be 1..256");
  }
  options.worker_id = absl::GetFlag(FLAGS_worker_id);
  if (options.worker_id.empty()) {
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    options.worker_id = absl::StrCat(host, ":", getpid());
  }
  options.lease_duration = absl::GetFlag(FLAGS_lease_duration);
  options.drain = absl::GetFlag(FLAGS_drain_timeout);
  options.kill_grace = absl::GetFlag(FLAGS_kill_grace);

  // Signals are taken by a thread of their own; block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a program may close its stdin early

  jobstream::client::Worker worker(ServerChannel(server), options);
  std::cerr << "jobstream work: " << options.worker_id << " taking "
            << absl::StrJoin(options.types, ", ") << " from " << server << " ("
            << options.concurrency << " at a time)" << std::endl;
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    if (sig == SIGTERM || sig == SIGINT) {
      std::cerr << "jobstream work: signal " << sig << ": taking no more jobs" << std::endl;
      worker.Stop();
    }
  });
  const absl::Status refused = worker.Run();
  // Every slot has ended (a refused LeaseJob ends them too): release the signal thread.
  pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
  std::cerr << "jobstream work: stopped after " << worker.jobs_done() << " jobs" << std::endl;
  return refused.ok() ? kExitOk : kExitFailed;
}

// The Schedule the create/update flags describe, or a usage error.
absl::StatusOr<jobstream::v1::Schedule> ScheduleFromFlags(const std::string& id) {
  using jobstream::v1::Schedule;
  Schedule s;
  s.set_id(id);
  s.set_cron(absl::GetFlag(FLAGS_cron));
  s.set_time_zone(absl::GetFlag(FLAGS_time_zone));
  if (!absl::GetFlag(FLAGS_every).empty()) {
    if (auto st = DurationFlag("every", absl::GetFlag(FLAGS_every), s.mutable_interval()); !st.ok()) {
      return st;
    }
  }
  if (s.cron().empty() == !s.has_interval()) {
    return absl::InvalidArgumentError("a schedule needs one of --cron and --every");
  }
  if (!absl::GetFlag(FLAGS_jitter).empty()) {
    if (auto st = DurationFlag("jitter", absl::GetFlag(FLAGS_jitter), s.mutable_jitter()); !st.ok()) {
      return st;
    }
  }
  const std::string overlap = absl::AsciiStrToUpper(absl::GetFlag(FLAGS_overlap));
  Schedule::OverlapPolicy overlap_policy = Schedule::OVERLAP_POLICY_UNSPECIFIED;
  if (!overlap.empty() && (!Schedule::OverlapPolicy_Parse(overlap, &overlap_policy) ||
                           overlap_policy == Schedule::OVERLAP_POLICY_UNSPECIFIED)) {
    return absl::InvalidArgumentError("--overlap takes skip, queue_one or allow");
  }
  s.set_overlap(overlap_policy);
  const std::string catch_up = absl::AsciiStrToUpper(absl::GetFlag(FLAGS_catch_up));
  Schedule::CatchUpPolicy catch_up_policy = Schedule::CATCH_UP_POLICY_UNSPECIFIED;
  if (!catch_up.empty() && (!Schedule::CatchUpPolicy_Parse(catch_up, &catch_up_policy) ||
                            catch_up_policy == Schedule::CATCH_UP_POLICY_UNSPECIFIED)) {
    return absl::InvalidArgumentError("--catch_up takes skip_missed, run_once or run_all");
  }
  s.set_catch_up(catch_up_policy);
  s.set_catch_up_limit(absl::GetFlag(FLAGS_catch_up_limit));
  jobstream::v1::JobTemplate& job = *s.mutable_job();
  job.set_type(absl::GetFlag(FLAGS_type));
  if (job.type().empty()) return absl::InvalidArgumentError("a schedule needs --type=T");
  if (auto st = StructFlag("params", absl::GetFlag(FLAGS_params), job.mutable_params());
      !st.ok()) {
    return st;
  }
  job.set_priority(absl::GetFlag(FLAGS_priority));
  job.set_max_attempts(absl::GetFlag(FLAGS_max_attempts));
  job.set_concurrency_key(absl::GetFlag(FLAGS_concurrency_key));
  if (auto st = ParseLabels(job.mutable_labels()); !st.ok()) return st;
  return s;
}

void PrintSchedule(const jobstream::v1::Schedule& s) { std::cout << ToJson(s, Interactive()) << std::endl; }

int ScheduleCommand(const std::string& server, const std::vector<std::string>& args) {
  using namespace jobstream::v1;
  if (args.empty()) return UsageError("schedule needs a subcommand: create, list, get, ...");
  const std::string& sub = args[0];
  auto stub = ScheduleService::NewStub(ServerChannel(server));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto fail = [](const grpc::Status& status) {
    return CallError(jobstream::client::FromGrpc(status));
  };
  if (sub == "list") {
    if (args.size() != 1) return UsageError("schedule list takes no arguments");
    ListSchedulesRequest request;
    request.set_page_size(absl::GetFlag(FLAGS_page_size));
    request.set_page_token(absl::GetFlag(FLAGS_page_token));
    ListSchedulesResponse response;
    if (auto st = stub->ListSchedules(&ctx, request, &response); !st.ok()) return fail(st);
    if (Interactive()) {
      std::cout << absl::StrFormat("%-24s  %-22s  %-20s  %-9s  %s\n", "ID", "TIMETABLE",
                                   "NEXT FIRE (UTC)", "LAST JOB", "FIRED/SKIPPED");
    }
    for (const Schedule& s : response.schedules()) {
      if (!Interactive()) {
        std::cout << ToJson(s) << "\n";
        continue;
      }
      const std::string timetable =
          s.has_interval() ? absl::StrCat("every ", absl::FormatDuration(ToDuration(s.interval())))
                           : s.cron() + (s.time_zone().empty() ? "" : " " + s.time_zone());
      const std::string next =
          s.paused() ? "paused"
          : s.next_fire_times_size() > 0
              ? absl::FormatTime("%Y-%m-%d %H:%M:%S", ToTime(s.next_fire_times(0)),
                                 absl::UTCTimeZone())
              : "-";
      std::cout << absl::StrFormat(
          "%-24s  %-22s  %-20s  %-9s  %d/%d\n", s.id(), timetable, next,
          s.last_job_id().empty() ? "-" : Job::State_Name(s.last_job_state()), s.fired_count(),
          s.skipped_count());
    }
    if (!response.next_page_token().empty()) {
      std::cerr << "more: --page_token=" << response.next_page_token() << "\n";
    }
    return kExitOk;
  }
  if (args.size() != 2) return UsageError("schedule " + sub + " takes one schedule ID");
  const std::string& id = args[1];
  Schedule schedule;
  grpc::Status status;
  if (sub == "create" || sub == "update") {
    auto s = ScheduleFromFlags(id);
    if (!s.ok()) return UsageError(std::string(s.status().message()));
    if (sub == "create") {
      CreateScheduleRequest request;
      *request.mutable_schedule() = *s;
      request.set_paused(absl::GetFlag(FLAGS_paused));
      status = stub->CreateSchedule(&ctx, request, &schedule);
    } else {
      UpdateScheduleRequest request;
      *request.mutable_schedule() = *s;
      status = stub->UpdateSchedule(&ctx, request, &schedule);
    }
  } else if (sub == "get") {
    GetScheduleRequest request;
    request.set_id(id);
    status = stub->GetSchedule(&ctx, request, &schedule);
  } else if (sub == "pause") {
    PauseScheduleRequest request;
    request.set_id(id);
    status = stub->PauseSchedule(&ctx, request, &schedule);
  } else if (sub == "resume") {
    ResumeScheduleRequest request;
    request.set_id(id);
    status = stub->ResumeSchedule(&ctx, request, &schedule);
  } else if (sub == "trigger") {
    TriggerScheduleRequest request;
    request.set_id(id);
    Job job;
    if (auto st = stub->TriggerSchedule(&ctx, request, &job); !st.ok()) return fail(st);
    if (Interactive()) std::cout << job.id() << std::endl;
    else std::cout << ToJson(job) << std::endl;
    return kExitOk;
  } else if (sub == "delete") {
    DeleteScheduleRequest request;
    request.set_id(id);
    DeleteScheduleResponse response;
    if (auto st = stub->DeleteSchedule(&ctx, request, &response); !st.ok()) return fail(st);
    std::cout << "deleted schedule " << id << std::endl;
    return kExitOk;
  } else {
    return UsageError("unknown schedule subcommand \"" + sub + "\"");
  }
  if (!status.ok()) return fail(status);
  PrintSchedule(schedule);
  return kExitOk;
}

std::shared_ptr<grpc::Channel> ServerChannel(const std::string& server) {
  jobstream::client::ChannelOptions options;
  options.ca_file = absl::GetFlag(FLAGS_server_ca);
  options.cert_file = absl::GetFlag(FLAGS_client_cert);
  options.key_file = absl::GetFlag(FLAGS_client_key);
  auto token = jobstream::client::ReadToken(absl::GetFlag(FLAGS_token_file));
  if (!token.ok()) std::exit(UsageError(std::string(token.status().message())));
  options.token = *std::move(token);
  auto channel = jobstream::client::JobClient::Connect(server, options);
  if (!channel.ok()) std::exit(UsageError(std::string(channel.status().message())));
  return *std::move(channel);
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(Usage());
  // `jobstream COMMAND --help` prints that command's help (absl's --help lists flags).
  std::string command;
  bool help = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") break;
    if (arg == "--help" || arg == "-h" || arg == "--helpfull") help = true;
    else if (command.empty() && !arg.empty() && arg[0] != '-') command = arg;
  }
  if (help || command == "help") {
    auto it = CommandHelp().find(command);
    std::cout << (it != CommandHelp().end() ? it->second + "\n" : Usage());
    return kExitOk;
  }
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() < 2) return UsageError("no command given");
  command = positional[1];
  std::vector<std::string> args(positional.begin() + 2, positional.end());

  if (command == "work") return Work(absl::GetFlag(FLAGS_server), args);
  if (command == "token") return NewToken(args);
  if (command == "schedule") return ScheduleCommand(absl::GetFlag(FLAGS_server), args);
  if (command == "types") {
    if (!args.empty()) return UsageError("types takes no arguments");
    return Types(absl::GetFlag(FLAGS_server));
  }
  if (command == "pause" || command == "resume") {
    if (args.size() != 1) return UsageError(command + " takes one job type");
    return PauseType(absl::GetFlag(FLAGS_server), args[0], command == "pause");
  }
  jobstream::client::JobClient client(ServerChannel(absl::GetFlag(FLAGS_server)));
  if (command == "submit") return Submit(client, args);
  if (command == "batch") return Batch(client, args);
  if (command == "list") {
    if (!args.empty()) return UsageError("list takes no arguments");
    return List(client);
  }
  if (command == "fetch") return Fetch(client, args);
  if (command == "whoami") {
    if (!args.empty()) return UsageError("whoami takes no arguments");
    return WhoAmI(client);
  }
  if (CommandHelp().count(command) == 0) return UsageError("unknown command \"" + command + "\"");
  if (args.size() != 1) return UsageError(command + " takes one job ID");
  const std::string* id = &args[0];
  if (command == "watch") {
    const std::vector<std::string> after = absl::GetFlag(FLAGS_after);
    int64_t sequence = 0;
    if (after.size() > 1 || (after.size() == 1 && !absl::SimpleAtoi(after[0], &sequence))) {
      return UsageError("watch: --after takes one sequence number");
    }
    return Watch(client, *id, sequence);
  }
  if (command == "status") {
    auto job = client.GetStatus(*id);
    if (!job.ok()) return CallError(job.status());
    std::cout << ToJson(*job, Interactive()) << std::endl;
    return kExitOk;
  }
  if (command == "cancel" || command == "retry") return JobAction(command, *id);
  // delete
  if (auto s = client.Delete(*id); !s.ok()) return CallError(s);
  std::cout << "deleted " << *id << std::endl;
  return kExitOk;
}
