#include "lb/metrics/http_server.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <optional>
#include <thread>

namespace xdplb::metrics {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

std::string percentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() &&
               std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
               std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

struct HttpServer::Impl {
  HttpServerOptions options;
  std::map<std::string, Handler> routes;
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  std::thread thread;
  std::atomic<size_t> connections{0};
  size_t responseBytes = 0;  // bodies rendered and not yet written (server thread only)
  uint16_t port = 0;

  void accept();
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket s, HttpServer::Impl& server) : stream_(std::move(s)), server_(server) {
    ++server_.connections;
  }
  ~Session() { --server_.connections; }

  void start(std::chrono::milliseconds timeout) {
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(server_.options.maxHeaderBytes));
    parser_->body_limit(server_.options.maxBodyBytes);
    stream_.expires_after(timeout);
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->onRead(ec); });
  }

 private:
  void onRead(beast::error_code ec) {
    if (ec == http::error::header_limit) return reply(431, "request header too large\n", false);
    if (ec == http::error::body_limit) return reply(413, "request body not accepted\n", false);
    if (ec == beast::error::timeout || ec == http::error::end_of_stream || ec == asio::error::eof ||
        ec == asio::error::connection_reset || ec == asio::error::operation_aborted) {
      return close();
    }
    if (ec) return reply(400, "bad request\n", false);
    const auto& req = parser_->get();
    HttpRequest r;
    r.method = std::string(req.method_string());
    r.target = std::string(req.target());
    const auto q = r.target.find('?');
    r.path = r.target.substr(0, q);
    if (q != std::string::npos) {
      r.query = r.target.substr(q + 1);
      size_t pos = 0;
      while (pos <= r.query.size()) {
        size_t amp = r.query.find('&', pos);
        if (amp == std::string::npos) amp = r.query.size();
        const std::string kv = r.query.substr(pos, amp - pos);
        const auto eq = kv.find('=');
        if (!kv.empty())
          r.params[percentDecode(kv.substr(0, eq))] =
              eq == std::string::npos ? "" : percentDecode(kv.substr(eq + 1));
        pos = amp + 1;
      }
    }
    keepAlive_ = req.keep_alive();
    if (req.method() != http::verb::get && req.method() != http::verb::head)
      return reply(405, "only GET\n", keepAlive_);
    auto it = server_.routes.find(r.path);
    if (it == server_.routes.end()) return reply(404, "not found\n", keepAlive_);
    if (server_.responseBytes >= server_.options.maxResponseBytes)
      return reply(503, "busy: too many responses not yet read\n", false);
    HttpResponse out;
    try {
      out = it->second(r);
    } catch (const std::exception& e) {
      spdlog::error("HTTP {}: {}", r.path, e.what());
      out = {500, "text/plain; charset=utf-8", "internal error\n"};
    }
    head_ = req.method() == http::verb::head;
    reply(out.status, std::move(out.body), keepAlive_, out.contentType);
  }

  void reply(unsigned status, std::string body, bool keepAlive,
             const std::string& type = "text/plain; charset=utf-8") {
    auto res = std::make_shared<http::response<http::string_body>>();
    res->result(status);
    res->version(11);
    res->set(http::field::server, "xdplb");
    res->set(http::field::content_type, type);
    res->keep_alive(keepAlive);
    res->body() = std::move(body);
    res->prepare_payload();
    if (head_) res->body().clear();
    // The body counts against maxResponseBytes until it is written, and the
    // client must take it at the minimum rate.
    const size_t bytes = res->body().size();
    server_.responseBytes += bytes;
    const auto rate = std::max<size_t>(1, server_.options.minWriteBytesPerSecond);
    stream_.expires_after(server_.options.readTimeout +
                          std::chrono::milliseconds(bytes * 1000 / rate));
    http::async_write(
        stream_, *res,
        [self = shared_from_this(), res, keepAlive, bytes](beast::error_code ec, size_t) {
          self->server_.responseBytes -= bytes;
          if (ec || !keepAlive) return self->close();
          self->start(self->server_.options.idleTimeout);
        });
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  HttpServer::Impl& server_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::empty_body>> parser_;
  bool keepAlive_ = false;
  bool head_ = false;
};

}  // namespace

void HttpServer::Impl::accept() {
  acceptor.async_accept([this](beast::error_code ec, tcp::socket s) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec) {
      if (connections.load() >= options.maxConnections) {
        // Over the limit: refuse at once rather than queue.
        beast::error_code ignored;
        s.close(ignored);
      } else {
        std::make_shared<Session>(std::move(s), *this)->start(options.readTimeout);
      }
    } else if (ec == asio::error::no_descriptors) {
      // Out of file descriptors: back off a little instead of spinning.
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    accept();
  });
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<HttpServer>> HttpServer::start(HttpServerOptions options,
                                                      std::map<std::string, Handler> routes) {
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  impl->routes = std::move(routes);
  std::string host;
  uint16_t port = 0;
  if (!splitHostPort(impl->options.listen, host, port))
    return makeError("listen address '" + impl->options.listen + "' is not host:port");
  beast::error_code ec;
  const auto addr = asio::ip::make_address(host, ec);
  if (ec)
    return makeError("listen address '" + impl->options.listen + "': '" + host +
                     "' is not an IP address");
  const tcp::endpoint ep(addr, port);
  impl->acceptor.open(ep.protocol(), ec);
  if (!ec) impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(ep, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return std::unexpected(Error{ec, "listen on " + impl->options.listen});
  impl->port = impl->acceptor.local_endpoint().port();
  impl->accept();
  impl->thread = std::thread([p = impl.get()] { p->io.run(); });
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::~HttpServer() { stop(); }

uint16_t HttpServer::port() const { return impl_->port; }

void HttpServer::stop() {
  if (!impl_ || !impl_->thread.joinable()) return;
  asio::post(impl_->io, [p = impl_.get()] {
    beast::error_code ignored;
    p->acceptor.close(ignored);
  });
  impl_->io.stop();
  impl_->thread.join();
}

}  // namespace xdplb::metrics
