#include "lb/app/http_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace xdplb::app {
namespace asio = boost::asio;
namespace http = boost::beast::http;

struct HttpClient::Impl {
  asio::io_context io;
  boost::beast::tcp_stream stream{io};
  boost::beast::flat_buffer buffer;
  bool connected = false;
};

HttpClient::HttpClient(std::string address)
    : address_(std::move(address)), impl_(std::make_unique<Impl>()) {}
HttpClient::~HttpClient() = default;

Result<HttpReply> HttpClient::get(const std::string& target) {
  const auto colon = address_.rfind(':');
  if (colon == std::string::npos) return makeError("bad daemon address '" + address_ + "'");
  std::string host = address_.substr(0, colon);
  const std::string port = address_.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  if (host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::") host = "::1";

  for (int attempt = 0; attempt < 2; ++attempt) {
    boost::system::error_code ec;
    if (!impl_->connected) {
      asio::ip::tcp::resolver resolver(impl_->io);
      auto endpoints = resolver.resolve(host, port, ec);
      if (ec) return errnoError(ec.value(), "resolve " + address_);
      impl_->stream.expires_after(std::chrono::seconds(5));
      impl_->stream.connect(endpoints, ec);
      if (ec)
        return std::unexpected(Error{ec, "connect to the daemon at " + address_ +
                                             " (is `xdplb run` running? see [metrics] listen)"});
      impl_->connected = true;
    }
    http::request<http::empty_body> req{http::verb::get, target, 11};
    req.set(http::field::host, host);
    req.keep_alive(true);
    impl_->stream.expires_after(std::chrono::seconds(10));
    http::write(impl_->stream, req, ec);
    http::response<http::string_body> res;
    if (!ec) http::read(impl_->stream, impl_->buffer, res, ec);
    if (ec) {
      // A keep-alive connection the server closed: reconnect once.
      impl_->stream.close();
      impl_->connected = false;
      if (attempt == 0) continue;
      return std::unexpected(Error{ec, "GET " + target + " from " + address_});
    }
    if (!res.keep_alive()) {
      impl_->stream.close();
      impl_->connected = false;
    }
    return HttpReply{res.result_int(), std::move(res.body())};
  }
  return makeError("GET " + target + " from " + address_);
}

}  // namespace xdplb::app
