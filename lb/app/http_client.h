// A small blocking HTTP/1.1 client for the CLI (status, live lookup): one
// keep-alive connection to the daemon's loopback endpoint.
#pragma once

#include <memory>
#include <string>

#include "lb/common/result.h"

namespace xdplb::app {

struct HttpReply {
  unsigned status = 0;
  std::string body;
};

class HttpClient {
 public:
  // address: "host:port" or "[v6]:port", as in [metrics] listen.
  explicit HttpClient(std::string address);
  ~HttpClient();
  [[nodiscard]] Result<HttpReply> get(const std::string& target);

 private:
  struct Impl;
  std::string address_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace xdplb::app
