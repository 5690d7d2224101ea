#include "tests/support/postgres_process.h"

#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tests/support/process.h"

namespace jobstream::testing {
namespace {

constexpr char kBinDir[] = "/usr/lib/postgresql/15/bin";

// A free loopback port (the kernel's pick; released at once, taken again by postgres).
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

// The URL of `database` on the server at `port`.
std::string UrlOf(int port, const std::string& database) {
  return absl::StrCat("postgresql://postgres@127.0.0.1:", port, "/", database);
}

std::string Tail(const std::string& path) {
  std::string text;
  if (FILE* f = std::fopen(path.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
    std::fclose(f);
  }
  return text.size() > 2000 ? text.substr(text.size() - 2000) : text;
}

}  // namespace

bool PostgresProcess::Available() {
  return access((std::string(kBinDir) + "/postgres").c_str(), X_OK) == 0 &&
         (geteuid() != 0 || getpwnam("postgres") != nullptr);
}

absl::StatusOr<PostgresProcess*> PostgresProcess::Shared() {
  static absl::StatusOr<PostgresProcess*>* shared = [] {
    using Result = absl::StatusOr<PostgresProcess*>;
    if (!Available()) return new Result(nullptr);
    const char* file = std::getenv("JOBSTREAM_TEST_POSTGRES");
    if (file == nullptr || *file == '\0') {  // run by hand: a server of this process's own
      static PostgresProcess own(/*durable=*/false);  // stopped at exit
      absl::Status started = own.Start();
      return started.ok() ? new Result(&own) : new Result(started);
    }
    std::ifstream in(file);
    int port = 0;
    if (!(in >> port) || port <= 0) {
      return new Result(absl::FailedPreconditionError(absl::StrCat(
          "the ctest run's PostgreSQL did not start (no port in ", file,
          "): see the output of the test postgres_start")));
    }
    auto* attached = new PostgresProcess(/*durable=*/false);
    attached->attached_ = true;
    attached->port_ = port;
    return new Result(attached);
  }();
  return *shared;
}

absl::Status PostgresProcess::Start() {
  if (geteuid() == 0) {  // the postgres user writes the data dir and the log
    const passwd* pw = getpwnam("postgres");
    if (pw == nullptr || chown(dir_.path().c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      return absl::FailedPreconditionError("cannot hand the temp dir to the postgres user");
    }
  }
  data_ = dir_.sub("data");
  const std::string log = dir_.sub("initdb.log");
  const pid_t initdb = Spawn({std::string(kBinDir) + "/initdb", "-D", data_, "-U", "postgres",
                              "--auth=trust", "-E", "UTF8", "--no-sync"},
                             log, "postgres");
  int status = 0;
  waitpid(initdb, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat("initdb failed: ", Tail(log)));
  }
  absl::Status launched;
  for (int attempt = 0; attempt < 3; ++attempt) {  // another process may take the port
    port_ = FreePort();
    launched = Launch();
    if (launched.ok()) break;
  }
  if (!launched.ok()) return launched;
  return CreateDatabase("jobstream");
}

namespace {

// Runs one statement in the server's "postgres" database.
absl::Status Command(int port, const std::string& sql) {
  PGconn* conn = PQconnectdb(UrlOf(port, "postgres").c_str());
  PGresult* result = PQexec(conn, sql.c_str());
  const bool ok = PQresultStatus(result) == PGRES_COMMAND_OK;
  std::string error = PQerrorMessage(conn);
  PQclear(result);
  PQfinish(conn);
  return ok ? absl::OkStatus() : absl::InternalError(absl::StrCat(sql, " failed: ", error));
}

}  // namespace

absl::Status PostgresProcess::CreateDatabase(const std::string& name) {
  return Command(port_, "CREATE DATABASE " + name);
}

absl::StatusOr<std::string> PostgresProcess::NewDatabase() {
  // The process id keeps apart the databases of test processes sharing the server.
  const std::string name = absl::StrCat("t", getpid(), "_", databases_++);
  if (absl::Status s = CreateDatabase(name); !s.ok()) return s;
  return UrlOf(port_, name);
}

void PostgresProcess::DropDatabase(const std::string& url) {
  const size_t slash = url.rfind('/');
  if (slash == std::string::npos) return;
  Command(port_, absl::StrCat("DROP DATABASE IF EXISTS ", url.substr(slash + 1), " WITH (FORCE)"))
      .IgnoreError();
}

absl::Status PostgresProcess::Launch() {
  const std::string log = dir_.sub("postgres.log");
  pid_ = Spawn({std::string(kBinDir) + "/postgres", "-D", data_, "-p", std::to_string(port_), "-c",
                "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=" + dir_.path(), "-c",
                "max_connections=300", "-c", durable_ ? "fsync=on" : "fsync=off"},
               log, "postgres");
  const std::string conninfo = UrlOf(port_, "postgres");
  for (const absl::Time deadline = absl::Now() + absl::Seconds(30); absl::Now() < deadline;
       absl::SleepFor(absl::Milliseconds(50))) {
    if (PQping(conninfo.c_str()) == PQPING_OK) return absl::OkStatus();
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::InternalError(absl::StrCat("postgres exited at start: ", Tail(log)));
    }
  }
  Stop(SIGKILL);
  return absl::DeadlineExceededError(absl::StrCat("postgres did not answer: ", Tail(log)));
}

absl::Status PostgresProcess::Restart(int signal) {
  if (attached_) {
    return absl::FailedPreconditionError(
        "the shared PostgreSQL is not restarted by tests: start a private PostgresProcess");
  }
  Stop(signal);
  return Launch();
}

namespace {

// The processes `pid` started and has not reaped (its backends, for a postmaster).
std::vector<pid_t> ChildrenOf(pid_t pid) {
  std::vector<pid_t> children;
  std::ifstream in(absl::StrCat("/proc/", pid, "/task/", pid, "/children"));
  for (pid_t child; in >> child;) children.push_back(child);
  return children;
}

// Whether `pid` has released what it held: gone, or a zombie (its memory, and so its hold
// on shared memory, released).
bool Released(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(in, line)) return true;
  const size_t paren = line.rfind(')');  // the name may hold spaces
  return paren == std::string::npos || line.compare(paren + 1, 3, " Z ") == 0;
}

}  // namespace

void PostgresProcess::Stop(int signal) {
  if (pid_ <= 0) return;
  // A crash takes the backends too, as a machine's would; a fast shutdown is the
  // postmaster's to carry out. Each backend is a session of its own (PostgreSQL calls
  // setsid in every child), so they are killed one by one, not as a process group.
  const std::vector<pid_t> backends = signal == SIGKILL ? ChildrenOf(pid_) : std::vector<pid_t>();
  kill(pid_, signal);
  for (pid_t backend : backends) kill(backend, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  // A postmaster started while a backend still holds the shared memory refuses to start.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  for (pid_t backend : backends) {
    while (!Released(backend) && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  }
  pid_ = -1;
}

PostgresProcess::~PostgresProcess() { Stop(SIGINT); }

std::string PostgresProcess::url() const {
  return UrlOf(port_, "jobstream");
}

}  // namespace jobstream::testing
