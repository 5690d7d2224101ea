#include "server/tracing/span_exporter.h"

#include <atomic>
#include <deque>
#include <iostream>
#include <memory>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"
#include "server/metrics/server_metrics.h"
#include "server/tracing/otlp_wire.h"

namespace jobstream::tracing {
namespace {

namespace otlp = opentelemetry::proto;

class Exporter {
 public:
  explicit Exporter(const ExporterOptions& options)
      : options_(options),
        stub_(grpc::CreateChannel(options.endpoint, grpc::InsecureChannelCredentials())),
        thread_([this] { Run(); }) {}

  void Add(std::string span) {
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
      std::vector<std::string> batch;
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

  void Send(const std::vector<std::string>& batch) {
    const std::string request = ExportRequest(options_.service_instance, batch);
    grpc::Slice slice(request);
    const grpc::ByteBuffer request_bytes(&slice, 1);
    grpc::ByteBuffer response_bytes;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(absl::ToInt64Milliseconds(options_.timeout)));
    absl::Notification done;
    grpc::Status status;
    stub_.UnaryCall(&ctx, "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                    grpc::StubOptions(), &request_bytes, &response_bytes,
                    [&](grpc::Status s) {
                      status = std::move(s);
                      done.Notify();
                    });
    done.WaitForNotification();
    otlp::collector::trace::v1::ExportTraceServiceResponse response;
    if (status.ok() && !grpc::SerializationTraits<decltype(response)>::Deserialize(
                           &response_bytes, &response).ok()) {
      status = grpc::Status(grpc::StatusCode::INTERNAL, "the collector's answer did not parse");
    }
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
  grpc::GenericStub stub_;
  absl::Mutex mu_;
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);
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

void Export(std::string span) {
  if (Exporter* e = exporter.load(std::memory_order_acquire)) e->Add(std::move(span));
}

}  // namespace jobstream::tracing
