#include "server/webhooks/webhook_sender.h"

#include <openssl/hmac.h>

#include <iostream>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/ssl/host_name_verification.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/http.hpp"
#include "common/flex_stream.h"
#include "google/protobuf/util/json_util.h"
#include "jobstream/v1/job_states.h"
#include "server/metrics/server_metrics.h"

namespace jobstream::webhooks {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
namespace ssl = net::ssl;

std::string Signature(const std::string& secret, const std::string& body) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), mac, &length);
  return "sha256=" +
         absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(mac), length));
}

// One POST, plain or over TLS: resolve, connect, (handshake,) write, read the answer. The
// deadline covers all of it. done(status, error) gets the HTTP status, or 0 and why not.
class WebhookSender::Attempt : public std::enable_shared_from_this<Attempt> {
 public:
  using Done = std::function<void(int status, std::string error)>;
  Attempt(net::io_context& ioc, ssl::context& tls, Target target, absl::Duration timeout,
          Done done)
      : resolver_(ioc),
        stream_(net::ip::tcp::socket(ioc), target.tls ? &tls : nullptr, ssl::stream_base::client),
        target_(std::move(target)), timeout_(timeout), done_(std::move(done)) {}

  http::request<http::string_body>& request() { return request_; }

  void Run() {
    request_.method(http::verb::post);
    request_.target(target_.target);
    request_.version(11);
    request_.set(http::field::host, target_.host_header);
    request_.set(http::field::user_agent, "jobstream-webhook/1");
    request_.set(http::field::content_type, "application/json");
    request_.keep_alive(false);
    request_.prepare_payload();
    stream_.tcp().expires_after(absl::ToChronoMilliseconds(timeout_));
    resolver_.async_resolve(target_.host, target_.port,
                            [self = shared_from_this()](beast::error_code ec, auto results) {
                              if (ec) return self->Fail("cannot resolve the host", ec);
                              self->Connect(results);
                            });
  }

 private:
  void Connect(const net::ip::tcp::resolver::results_type& results) {
    stream_.tcp().async_connect(
        results, [self = shared_from_this()](beast::error_code ec, auto) {
          if (ec) return self->Fail("cannot connect", ec);
          auto* tls = self->stream_.tls();
          if (tls == nullptr) return self->Write();
          // SNI, and the certificate must name the host.
          SSL_set_tlsext_host_name(tls->native_handle(), self->target_.host.c_str());
          tls->set_verify_mode(ssl::verify_peer);
          tls->set_verify_callback(ssl::host_name_verification(self->target_.host));
          self->stream_.async_handshake([self](beast::error_code ec) {
            if (ec) return self->Fail("TLS handshake failed", ec);
            self->Write();
          });
        });
  }

  void Write() {
    http::async_write(stream_, request_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->Fail("cannot send the request", ec);
      self->parser_.body_limit(64 << 10);
      http::async_read(self->stream_, self->buffer_, self->parser_,
                       [self](beast::error_code ec, size_t) {
                         if (ec) return self->Fail("no answer", ec);
                         self->Finish(self->parser_.get().result_int(), "");
                       });
    });
  }

  void Fail(const char* what, beast::error_code ec) {
    Finish(0, absl::StrCat(what, ": ", ec == beast::error::timeout
                                           ? std::string("timed out")
                                           : ec.message()));
  }
  void Finish(int status, std::string error) {
    beast::error_code ignored;
    stream_.tcp().socket().shutdown(net::ip::tcp::socket::shutdown_both, ignored);
    if (done_) std::exchange(done_, nullptr)(status, std::move(error));
  }

  net::ip::tcp::resolver resolver_;
  FlexStream stream_;  // TLS for an https URL
  const Target target_;
  const absl::Duration timeout_;
  Done done_;
  http::request<http::string_body> request_;
  beast::flat_buffer buffer_;
  http::response_parser<http::string_body> parser_;
};

WebhookSender::WebhookSender(DeliveryStore* store, const WebhookPolicy* policy,
                             WebhookOptions options)
    : store_(store), policy_(policy), options_(std::move(options)),
      tls_(ssl::context::tls_client), timer_(ioc_) {
  tls_.set_default_verify_paths();
}

WebhookSender::~WebhookSender() { Stop(); }

absl::Status WebhookSender::Start() {
  if (!options_.ca_file.empty()) {
    beast::error_code ec;
    tls_.load_verify_file(options_.ca_file, ec);
    if (ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("--webhook_ca_file ", options_.ca_file, ": ", ec.message()));
    }
  }
  if (absl::Status s = LoadQueue(); !s.ok()) return s;
  if (!queue_.empty()) {
    std::cerr << "jobstream-server: " << queue_.size() << " webhook deliveries to resume\n";
  }
  thread_ = std::thread([this] {
    auto work = net::make_work_guard(ioc_);
    net::post(ioc_, [this] { Arm(); });
    ioc_.run();
  });
  return absl::OkStatus();
}

void WebhookSender::Stop() {
  if (!thread_.joinable()) return;
  net::post(ioc_, [this] {
    stopped_ = true;
    timer_.cancel();
  });
  ioc_.stop();
  thread_.join();
}

absl::Status WebhookSender::LoadQueue() {
  next_rescan_ = absl::Now() + store_->rescan_period();
  auto pending = store_->Pending();
  if (!pending.ok()) return pending.status();
  queue_.clear();
  for (Due& due : *pending) {
    if (!in_flight_.contains({due.job_id, due.sequence})) queue_.insert(std::move(due));
  }
  return absl::OkStatus();
}

void WebhookSender::Reload() {
  net::post(ioc_, [this] {
    if (absl::Status s = LoadQueue(); !s.ok()) {
      std::cerr << "jobstream-server: reading the webhook queue again: " << s << "\n";
    }
    Arm();
  });
}

void WebhookSender::Schedule(const std::string& job_id, int64_t sequence, int64_t due_ms) {
  net::post(ioc_, [this, due = Due{due_ms, job_id, sequence}] {
    queue_.insert(due);
    Arm();
  });
}

void WebhookSender::Arm() {
  if (stopped_) return;
  if (absl::Now() >= next_rescan_) {
    // Deliveries other servers wrote, or left when they died.
    if (absl::Status s = LoadQueue(); !s.ok()) {
      std::cerr << "jobstream-server: reading pending webhook deliveries: " << s << "\n";
    }
  }
  Pump();
  absl::Time wake = next_rescan_;
  if (!queue_.empty()) wake = std::min(wake, absl::FromUnixMillis(queue_.begin()->due_ms));
  if (wake == absl::InfiniteFuture()) return;
  timer_.expires_at(std::chrono::steady_clock::now() +
                    std::max(absl::ToChronoMilliseconds(wake - absl::Now()),
                             std::chrono::milliseconds(0)));
  timer_.async_wait([this](beast::error_code ec) {
    if (!ec) Arm();
  });
}

void WebhookSender::Pump() {
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  while (!queue_.empty() && static_cast<int>(in_flight_.size()) < options_.concurrency &&
         queue_.begin()->due_ms <= now_ms) {
    Due due = *queue_.begin();
    queue_.erase(queue_.begin());
    Deliver(due);
  }
}

void WebhookSender::Deliver(const Due& due) {
  if (in_flight_.contains({due.job_id, due.sequence})) return;  // queued twice
  // Held past the attempt's deadline, so no other server sends it meanwhile. The second
  // timeout's worth is margin for writing the outcome and for the servers' clocks; it is
  // also how long a delivery waits when the server sending it dies mid-attempt.
  const int64_t hold_until_ms = absl::ToUnixMillis(absl::Now() + 2 * options_.timeout);
  auto taken = store_->Take(due, hold_until_ms);
  if (!taken.ok()) {  // still pending in the store: read again at the next rescan
    std::cerr << "jobstream-server: taking webhook delivery " << due.job_id << "-"
              << due.sequence << ": " << taken.status() << "\n";
    return;
  }
  if (!taken->has_value()) return;  // gone, or another server's
  auto target = policy_->Check((*taken)->job.webhook().url());
  if (!target.ok()) {
    return Record(due, **taken, 0, absl::StrCat("not sent: ", target.status().message()));
  }
  std::string body;
  google::protobuf::util::JsonPrintOptions print;
  (void)google::protobuf::util::MessageToJsonString((*taken)->event, &body, print);
  in_flight_.insert({due.job_id, due.sequence});
  auto attempt = std::make_shared<Attempt>(
      ioc_, tls_, *std::move(target), options_.timeout,
      [this, due, taken = **taken](int status, std::string error) {
        in_flight_.erase({due.job_id, due.sequence});
        Record(due, taken, status, error);
        Arm();
      });
  auto& request = attempt->request();
  request.set("X-Jobstream-Delivery", (*taken)->record.id());
  request.set("X-Jobstream-Event", absl::AsciiStrToLower(
                                       v1::JobEvent::Type_Name((*taken)->event.type())));
  request.set("X-Jobstream-Signature", Signature(options_.secret, body));
  request.body() = std::move(body);
  attempt->Run();
}

void WebhookSender::Record(const Due& due, const DeliveryStore::Taken& taken, int status,
                           const std::string& error) {
  const absl::Time now = absl::Now();
  v1::WebhookDelivery record = taken.record;
  record.set_attempts(record.attempts() + 1);
  record.set_last_status(status);
  *record.mutable_last_attempt_time() = v1::ToProto(now);
  const bool delivered = status >= 200 && status <= 299;
  record.set_last_error(delivered ? "" : (error.empty() ? absl::StrCat("HTTP ", status) : error));
  record.clear_next_attempt_time();
  std::optional<int64_t> next_due_ms;
  if (delivered) {
    record.set_state(v1::WebhookDelivery::DELIVERED);
    server_metrics::CountWebhookAttempt("delivered");
  } else if (record.attempts() >= options_.max_attempts) {
    record.set_state(v1::WebhookDelivery::FAILED);
    server_metrics::CountWebhookAttempt("gave_up");
  } else {
    server_metrics::CountWebhookAttempt("failed_will_retry");
    // Exponential backoff with jitter, so failing receivers are not hit in step.
    static thread_local absl::BitGen gen;
    absl::Duration backoff = options_.initial_backoff;
    for (int i = 1; i < record.attempts() && backoff < options_.max_backoff; ++i) backoff *= 2;
    backoff = std::min(backoff, options_.max_backoff) * absl::Uniform(gen, 0.75, 1.25);
    const absl::Time at = now + backoff;
    record.set_state(v1::WebhookDelivery::PENDING);
    *record.mutable_next_attempt_time() = v1::ToProto(at);
    next_due_ms = absl::ToUnixMillis(at);
  }
  store_->Record(due, taken, record, next_due_ms,
                 [this, job_id = due.job_id, sequence = due.sequence, next_due_ms](bool written) {
                   if (written && next_due_ms) Schedule(job_id, sequence, *next_due_ms);
                 });
}

}  // namespace jobstream::webhooks
