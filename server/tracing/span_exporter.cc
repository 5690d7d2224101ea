#include "server/tracing/span_exporter.h"

#include <atomic>
#include <deque>
#include <iostream>
#include <memory>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.grpc.pb.h"
#include "server/metrics/server_metrics.h"

namespace jobstream::tracing {
namespace {

namespace otlp = opentelemetry::proto;

class Exporter {
 public:
  explicit Exporter(const ExporterOptions& options)
      : options_(options),
        stub_(otlp::collector::trace::v1::TraceService::NewStub(
            grpc::CreateChannel(options.endpoint, grpc::InsecureChannelCredentials()))),
        thread_([this] { Run(); }) {}

  void Add(Span span) {
    absl::MutexLock lock(&mu_);
    if (queue_.size() >= options_.max_queue) {
      server_metrics::CountSpansDropped(1);
      return;
    }
    queue_.push_back(std::move(span));
  }

  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    thread_.join();
  }

 private:
  void Run() {
    for (;;) {
      std::vector<Span> batch;
      bool last = false;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_ || queue_.size() >= options_.max_batch;
        };
        mu_.AwaitWithTimeout(absl::Condition(&ready), options_.interval);
        while (!queue_.empty() && batch.size() < options_.max_batch) {
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
        last = stopping_ && queue_.empty();
      }
      if (!batch.empty()) Send(batch);
      if (last) return;
    }
  }

  void Send(const std::vector<Span>& batch) {
    otlp::collector::trace::v1::ExportTraceServiceRequest request;
    auto* resource_spans = request.add_resource_spans();
    auto attribute = [](auto* attributes, const std::string& key, const std::string& value) {
      auto* kv = attributes->Add();
      kv->set_key(key);
      kv->mutable_value()->set_string_value(value);
    };
    auto* resource = resource_spans->mutable_resource()->mutable_attributes();
    attribute(resource, "service.name", "jobstream");
    if (!options_.service_instance.empty()) {
      attribute(resource, "service.instance.id", options_.service_instance);
    }
    auto* scope = resource_spans->add_scope_spans();
    scope->mutable_scope()->set_name("jobstream-server");
    for (const Span& s : batch) {
      auto* span = scope->add_spans();
      span->set_trace_id(absl::HexStringToBytes(s.trace_id));
      span->set_span_id(absl::HexStringToBytes(s.span_id));
      if (!s.parent_span_id.empty()) {
        span->set_parent_span_id(absl::HexStringToBytes(s.parent_span_id));
      }
      span->set_name(s.name);
      span->set_kind(otlp::trace::v1::Span::SPAN_KIND_INTERNAL);
      span->set_start_time_unix_nano(static_cast<uint64_t>(absl::ToUnixNanos(s.start)));
      span->set_end_time_unix_nano(static_cast<uint64_t>(absl::ToUnixNanos(s.end)));
      for (const auto& [key, value] : s.attributes) {
        auto* kv = span->add_attributes();
        kv->set_key(key);
        if (const auto* text = std::get_if<std::string>(&value)) {
          kv->mutable_value()->set_string_value(*text);
        } else {
          kv->mutable_value()->set_int_value(std::get<int64_t>(value));
        }
      }
      if (s.error) {
        span->mutable_status()->set_code(otlp::trace::v1::Status::STATUS_CODE_ERROR);
        span->mutable_status()->set_message(s.error_message);
      }
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(absl::ToInt64Milliseconds(options_.timeout)));
    otlp::collector::trace::v1::ExportTraceServiceResponse response;
    const grpc::Status status = stub_->Export(&ctx, request, &response);
    if (!status.ok()) {
      server_metrics::CountSpansDropped(static_cast<int64_t>(batch.size()));
      if (absl::Now() - last_complaint_ > absl::Minutes(1)) {  // said now and then
        last_complaint_ = absl::Now();
        std::cerr << "jobstream-server: --otlp_endpoint " << options_.endpoint << " took no spans: "
                  << status.error_message() << " (" << batch.size() << " dropped)\n";
      }
      return;
    }
    const int64_t rejected = response.partial_success().rejected_spans();
    server_metrics::CountSpansExported(static_cast<int64_t>(batch.size()) - rejected);
    if (rejected > 0) server_metrics::CountSpansDropped(rejected);
  }

  const ExporterOptions options_;
  std::unique_ptr<otlp::collector::trace::v1::TraceService::Stub> stub_;
  absl::Mutex mu_;
  std::deque<Span> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_complaint_ = absl::InfinitePast();  // the thread's own
  std::thread thread_;  // last: started once the rest is made
};

std::atomic<Exporter*> exporter{nullptr};

}  // namespace

void StartExporter(const ExporterOptions& options) { exporter = new Exporter(options); }

void StopExporter() {
  Exporter* e = exporter.exchange(nullptr);
  if (e == nullptr) return;
  e->Stop();
  delete e;  // StopExporter's contract: nothing ends spans any more
}

bool Exporting() { return exporter.load(std::memory_order_relaxed) != nullptr; }

void Export(Span span) {
  if (Exporter* e = exporter.load(std::memory_order_acquire)) e->Add(std::move(span));
}

}  // namespace jobstream::tracing
