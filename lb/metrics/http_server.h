// The daemon's HTTP endpoint (/metrics, /healthz, /api/v1/*) on Boost.Beast,
// on its own thread and io_context: a 100 ms scrape or a hostile client never
// delays health checks or reloads on the daemon's io_context. Limits: a
// request must arrive within readTimeout, headers within maxHeaderBytes (431),
// no body (413), at most maxConnections at once (the rest are closed at
// accept), idle keep-alive connections closed after idleTimeout. A response
// must be taken at minWriteBytesPerSecond (after readTimeout) or the
// connection is closed, and responses not yet written may hold at most
// maxResponseBytes together: beyond, requests get 503 (a scrape of a large
// balancer is ~85 MB, and slow readers must not make the daemon hold
// hundreds of them).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "lb/common/ip.h"
#include "lb/common/result.h"

namespace xdplb::metrics {

struct HttpRequest {
  std::string method, target, path, query;
  std::map<std::string, std::string> params;  // percent-decoded query parameters
};

struct HttpResponse {
  unsigned status = 200;
  std::string contentType = "text/plain; charset=utf-8";
  std::string body;
};

using Handler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpServerOptions {
  std::string listen = "127.0.0.1:9450";  // host:port or [v6]:port; port 0 = ephemeral
  size_t maxConnections = 256;
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
  uint16_t port() const;
  void stop();

  struct Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// "a%20b" -> "a b"; '+' is a space.
std::string percentDecode(std::string_view s);

}  // namespace xdplb::metrics
