// A small HTTP/1.1 client for the CLI (status, reload, live lookup): one
// keep-alive connection to the daemon's admin API, on its UNIX socket or on
// an explicitly configured TCP admin listener. Every step (connect, write,
// read) runs asynchronously under a deadline, since Beast's timeouts apply to
// asynchronous operations only, and a reply's body is limited, so a wrong
// endpoint (a 85 MB /metrics) costs a bounded amount of time and memory.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "lb/common/result.h"

namespace xdplb::app {

struct HttpReply {
  unsigned status = 0;
  std::string body;
};

// Where the daemon's admin API is: a UNIX socket path, or host:port.
struct AdminEndpoint {
  std::string socket;  // a UNIX socket path; empty: tcp
  std::string tcp;     // "host:port" or "[v6]:port"
  std::string toString() const { return socket.empty() ? tcp : socket; }
};

struct HttpClientOptions {
  std::chrono::milliseconds timeout{10000};  // each request: connect, write, read
  size_t maxBodyBytes = size_t{64} << 20;
};

class HttpClient {
 public:
  explicit HttpClient(AdminEndpoint endpoint, HttpClientOptions options = {});
  ~HttpClient();
  [[nodiscard]] Result<HttpReply> get(const std::string& target);

  struct Impl;

 private:
  AdminEndpoint endpoint_;
  HttpClientOptions options_;
  std::unique_ptr<Impl> impl_;
};

// "a b&c" -> "a%20b%26c": a query parameter value, percent-encoded.
std::string queryEscape(const std::string& value);

}  // namespace xdplb::app
