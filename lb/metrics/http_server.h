// The daemon's HTTP endpoints on Boost.Beast: the metrics listener (/metrics,
// /healthz) on TCP and the admin API (/api/v1/*) on a UNIX socket, each a
// server of its own, on its own thread and io_context: a 100 ms scrape or a
// hostile client never delays health checks or reloads on the daemon's
// io_context, and control requests never queue behind scrapes.
//
// Limits: a request must arrive within readTimeout, headers within
// maxHeaderBytes (431), no body (413), at most maxConnections at once and
// maxConnectionsPerPeer from one peer (a TCP address, or a UNIX socket
// peer's uid): the rest are closed at accept, so one greedy client cannot
// keep Prometheus out. Idle keep-alive connections are closed after
// idleTimeout. A response must be taken at minWriteBytesPerSecond (after
// readTimeout) or the connection is closed, and responses not yet written
// may hold at most maxResponseBytes together: beyond, requests get 503 (a
// scrape of a large balancer is ~85 MB). HEAD is decided before routing: the
// handler sees request.head and must not render a body; none is ever sent.
// Accept errors back off (10 ms, doubling to 1 s) instead of spinning.
// docs/design.md, "HTTP endpoints", has the reasons.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "lb/common/ip.h"
#include "lb/common/result.h"

namespace xdplb::metrics {

struct HttpRequest {
  std::string method, target, path, query;
  std::map<std::string, std::string> params;  // percent-decoded query parameters
  bool head = false;  // HEAD: answer status and headers only, render no body
};

struct HttpResponse {
  unsigned status = 200;
  std::string contentType = "text/plain; charset=utf-8";
  std::string body;
};

using Handler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpServerOptions {
  // TCP: host:port or [v6]:port; port 0 = ephemeral. Ignored with unixPath.
  std::string listen = "127.0.0.1:9450";
  // A UNIX stream socket at this path instead of TCP. A stale socket file
  // (nobody accepts on it) is replaced; one another process serves is not.
  std::string unixPath;
  mode_t unixMode = 0660;
  std::optional<gid_t> unixGroup;  // chown the socket to this group
  size_t maxConnections = 256;
  size_t maxConnectionsPerPeer = 32;
  std::chrono::milliseconds readTimeout{5000}, idleTimeout{30000};
  size_t maxHeaderBytes = 8192;
  size_t maxBodyBytes = 0;
  size_t minWriteBytesPerSecond = 1 << 20;
  size_t maxResponseBytes = size_t{512} << 20;
};

class HttpServer {
 public:
  [[nodiscard]] static Result<std::unique_ptr<HttpServer>> start(
      HttpServerOptions options, std::map<std::string, Handler> routes);
  ~HttpServer();
  uint16_t port() const;  // TCP only; 0 for a UNIX socket
  // Shutdown order: stop accepting, close every open connection (a request
  // being handled finishes first), end the thread; then a UNIX socket's file
  // is removed. Idempotent.
  void stop();
  // Accept errors seen so far (each one backed off); for tests and logs.
  uint64_t acceptErrors() const;

  struct Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// "a%20b" -> "a b" (libcurl's decoder; '+' stays '+', as in RFC 3986).
std::string percentDecode(std::string_view s);

}  // namespace xdplb::metrics
