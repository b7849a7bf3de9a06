#include "lb/app/http_client.h"

#include <curl/curl.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <optional>

namespace xdplb::app {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using unix_socket = asio::local::stream_protocol;

struct HttpClient::Impl {
  asio::io_context io;
  std::optional<beast::tcp_stream> tcpStream;
  std::optional<beast::basic_stream<unix_socket>> unixStream;
  beast::flat_buffer buffer;
  bool connected = false;

  void close() {
    if (tcpStream) tcpStream->close();
    if (unixStream) unixStream->close();
    tcpStream.reset();
    unixStream.reset();
    connected = false;
    buffer.clear();
  }

  // Runs the queued operations to completion; the streams' expiry cancels
  // them at the deadline (asynchronous operations only honour it).
  void run() {
    io.restart();
    io.run();
  }

  template <class Stream>
  beast::error_code exchange(Stream& s, const http::request<http::empty_body>& req,
                             http::response_parser<http::string_body>& parser,
                             std::chrono::steady_clock::time_point deadline) {
    beast::error_code result;
    s.expires_at(deadline);
    http::async_write(s, req, [&](beast::error_code ec, size_t) {
      if (ec) {
        result = ec;
        return;
      }
      s.expires_at(deadline);
      http::async_read(s, buffer, parser, [&](beast::error_code e, size_t) { result = e; });
    });
    run();
    return result;
  }
};

HttpClient::HttpClient(AdminEndpoint endpoint, HttpClientOptions options)
    : endpoint_(std::move(endpoint)), options_(options), impl_(std::make_unique<Impl>()) {}
HttpClient::~HttpClient() = default;

Result<HttpReply> HttpClient::get(const std::string& target) {
  const std::string where = endpoint_.toString();
  std::string host = "localhost", port;
  if (endpoint_.socket.empty()) {
    const auto colon = endpoint_.tcp.rfind(':');
    if (colon == std::string::npos) return makeError("bad daemon address '" + where + "'");
    host = endpoint_.tcp.substr(0, colon);
    port = endpoint_.tcp.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
    if (host == "0.0.0.0") host = "127.0.0.1";
    if (host == "::") host = "::1";
  }
  const auto hint = endpoint_.socket.empty()
                        ? std::string(" (is `xdplb run` running? see [admin] listen)")
                        : std::string(" (is `xdplb run` running? see [admin] socket)");

  for (int attempt = 0; attempt < 2; ++attempt) {
    const auto deadline = std::chrono::steady_clock::now() + options_.timeout;
    beast::error_code ec;
    if (!impl_->connected) {
      if (endpoint_.socket.empty()) {
        tcp::resolver resolver(impl_->io);
        auto endpoints = resolver.resolve(host, port, ec);
        if (ec) return errnoError(ec.value(), "resolve " + where);
        auto& s = impl_->tcpStream.emplace(impl_->io);
        s.expires_at(deadline);
        s.async_connect(endpoints, [&](beast::error_code e, const tcp::endpoint&) { ec = e; });
      } else {
        auto& s = impl_->unixStream.emplace(impl_->io);
        s.expires_at(deadline);
        s.async_connect(unix_socket::endpoint(endpoint_.socket),
                        [&](beast::error_code e) { ec = e; });
      }
      impl_->run();
      if (ec) {
        impl_->close();
        if (ec == beast::error::timeout)
          return makeError("connect to the daemon at " + where + ": timed out after " +
                           std::to_string(options_.timeout.count()) + " ms");
        return std::unexpected(Error{ec, "connect to the daemon at " + where + hint});
      }
      impl_->connected = true;
    }
    http::request<http::empty_body> req{http::verb::get, target, 11};
    req.set(http::field::host, host);
    req.keep_alive(true);
    http::response_parser<http::string_body> parser;
    parser.body_limit(options_.maxBodyBytes);
    ec = impl_->tcpStream ? impl_->exchange(*impl_->tcpStream, req, parser, deadline)
                          : impl_->exchange(*impl_->unixStream, req, parser, deadline);
    if (ec) {
      impl_->close();
      if (ec == http::error::body_limit)
        return makeError("GET " + target + " from " + where + ": the answer exceeds " +
                         std::to_string(options_.maxBodyBytes) + " bytes");
      if (ec == beast::error::timeout)
        return makeError("GET " + target + " from " + where + ": no answer within " +
                         std::to_string(options_.timeout.count()) + " ms");
      // A keep-alive connection the server closed: reconnect once.
      if (attempt == 0) continue;
      return std::unexpected(Error{ec, "GET " + target + " from " + where});
    }
    auto res = parser.release();
    if (!res.keep_alive()) impl_->close();
    return HttpReply{res.result_int(), std::move(res.body())};
  }
  return makeError("GET " + target + " from " + where);
}

std::string queryEscape(const std::string& value) {
  char* out = curl_easy_escape(nullptr, value.data(), static_cast<int>(value.size()));
  if (!out) return {};
  std::string r(out);
  curl_free(out);
  return r;
}

}  // namespace xdplb::app
