// Session: one HTTP/1.1 connection. Everything it does runs on its strand: it reads one
// request (with size limits and a deadline, so a slow or hostile client only holds its
// own connection), answers it from a gRPC call, and goes on with the next (keep-alive).
// An events request turns the connection into an SSE stream until the job ends.
#pragma once

#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "boost/asio/steady_timer.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "gateway/gateway.h"
#include "gateway/job_feed.h"
#include "gateway/routes.h"
#include "gateway/upstream_watch.h"

namespace jobstream::gateway {

class Session : public FeedSink, public std::enable_shared_from_this<Session> {
 public:
  Session(boost::asio::ip::tcp::socket socket, Gateway* gateway);
  ~Session();
  void Start();
  // From any thread: closes the connection (gateway shutdown).
  void Close();

  // FeedSink, from the feed's threads.
  void Deliver(SseChunkPtr chunk) override;
  void FeedEnded() override;

 private:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;

  void Read();
  void OnRead(boost::beast::error_code ec);
  void Dispatch(Request request);
  void Reply(int status, std::string body, const std::string& content_type = "application/json",
             const std::string& location = "", const std::string& allow = "");
  void ReplyError(grpc::StatusCode code, const std::string& message);
  void ReplyStatus(const grpc::Status& status);
  void OnWritten(bool keep_alive, boost::beast::error_code ec);
  void CloseNow();
  // Runs fn on this session's strand, from a gRPC callback thread.
  template <typename Fn>
  void Post(Fn fn);
  std::string CorsOrigin() const;

  // Issues a unary call upstream (issue(ctx, request, response, callback)); on success
  // runs on_ok(response) on this session's strand, else replies with the mapped error.
  template <typename Call, typename Issue, typename OnOk>
  void Forward(std::shared_ptr<Call> call, Issue issue, OnOk on_ok);

  // REST handlers.
  void Submit(const Request& request);
  void GetJob(const std::string& job_id);
  void ListJobs(const Route& route);
  void ListTypes();
  void CancelJob(const std::string& job_id);
  void DeleteJob(const std::string& job_id);
  void Health();

  // SSE for one job.
  void StartJobEvents(const std::string& job_id, int64_t after);
  void StartAllEvents(const Route& route);
  // Sends the SSE response header; the stream then takes chunks through SseWrite.
  void BeginSse(int64_t after, bool many_jobs);
  void SseDeliver(SseChunkPtr chunk);
  void SseWrite(SseChunkPtr chunk);
  void SseFlush();
  void SseEnd();
  void ArmHeartbeat();
  void WatchForClose();

  boost::beast::tcp_stream stream_;
  Gateway* const gateway_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  unsigned version_ = 11;
  bool keep_alive_ = true;
  std::string origin_;  // the request's Origin header
  bool closed_ = false;

  // SSE state (strand only).
  struct Sse {
    int64_t last_sent = 0;  // one job's stream only
    bool many_jobs = false;  // /v1/events: ids are jobId:sequence, never deduplicated
    std::shared_ptr<JobFeed> feed;
    std::shared_ptr<WatchHandle> upstream;  // /v1/events
    std::deque<SseChunkPtr> pending;
    bool writing = false;
    bool ending = false;  // the last chunk is queued
    bool terminal_sent = false;
  };
  std::optional<Sse> sse_;
  boost::asio::steady_timer heartbeat_;
  std::array<char, 512> probe_;  // reads during SSE only to notice a closed connection
};

}  // namespace jobstream::gateway
