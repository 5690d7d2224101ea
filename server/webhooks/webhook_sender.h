// WebhookSender: POSTs the events a job's webhook asked for. Each delivery is stored with
// its event (the same write), pending by when it is due in its store (DeliveryStore), and
// survives restarts. An attempt POSTs the event's JSON with X-Jobstream-Delivery (the same
// id every attempt) and X-Jobstream-Signature: sha256=<hex HMAC-SHA256 of the body>; a
// 2xx delivers it, anything else (or no answer in time) is retried with exponential
// backoff until max_attempts. Every attempt is recorded (Job.webhook_deliveries).
// Redirects are not followed, and the URL's host is checked against the allow-list again
// at each attempt.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <thread>
#include <tuple>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ssl/context.hpp"
#include "boost/asio/steady_timer.hpp"
#include "server/webhooks/delivery_store.h"
#include "server/webhooks/webhook_policy.h"

namespace jobstream::webhooks {

struct WebhookOptions {
  std::string secret;  // the HMAC key
  int max_attempts = 10;
  absl::Duration initial_backoff = absl::Seconds(1);
  absl::Duration max_backoff = absl::Minutes(10);
  absl::Duration timeout = absl::Seconds(10);  // per attempt, connect to answer
  int concurrency = 32;                         // attempts in flight at once
  std::string ca_file;                          // extra CA for https receivers
};

class WebhookSender {
 public:
  // `store` must outlive the sender.
  WebhookSender(DeliveryStore* store, const WebhookPolicy* policy, WebhookOptions options);
  ~WebhookSender();

  // Loads the queued deliveries and starts sending.
  absl::Status Start();
  // A delivery of the job's event `sequence` is due at due_ms (its record is written).
  void Schedule(const std::string& job_id, int64_t sequence, int64_t due_ms);
  // After the store failed a write and came back: what is due is read again from it
  // (a retry whose record could not be written is due as it was before).
  void Reload();
  // Stops sending; what is queued stays queued for the next start.
  void Stop();

 private:
  class Attempt;
  void Arm();
  void Pump();
  void Deliver(const Due& due);
  // Records the attempt's outcome (status 0: no answer) and queues the next, if any.
  void Record(const Due& due, const DeliveryStore::Taken& taken, int status,
              const std::string& error);
  // Replaces queue_ with what the store has pending, but for deliveries in flight.
  absl::Status LoadQueue();

  DeliveryStore* const store_;
  const WebhookPolicy* const policy_;
  const WebhookOptions options_;
  boost::asio::io_context ioc_;
  boost::asio::ssl::context tls_;
  boost::asio::steady_timer timer_;
  std::set<Due> queue_;  // io thread only
  std::set<std::pair<std::string, int64_t>> in_flight_;  // (job, sequence); io thread only
  absl::Time next_rescan_ = absl::InfiniteFuture();  // io thread only
  bool stopped_ = false;
  std::thread thread_;
};

// sha256=<hex HMAC-SHA256(secret, body)>, as X-Jobstream-Signature carries it.
std::string Signature(const std::string& secret, const std::string& body);

}  // namespace jobstream::webhooks
