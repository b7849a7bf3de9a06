#include "lb/metrics/http_server.h"

#include <curl/curl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

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
using unix_socket = asio::local::stream_protocol;

// libcurl's decoder (RFC 3986: '+' is a plain character, as in URIs; the
// CLI encodes spaces as %20). A NUL from "%00" is kept out: no parameter
// may contain one.
std::string percentDecode(std::string_view s) {
  int n = 0;
  char* out = curl_easy_unescape(nullptr, s.data(), static_cast<int>(s.size()), &n);
  if (!out) return {};
  std::string r(out, static_cast<size_t>(n));
  curl_free(out);
  if (r.find('\0') != std::string::npos) r.erase(r.find('\0'));
  return r;
}

struct HttpServer::Impl {
  HttpServerOptions options;
  std::map<std::string, Handler> routes;
  asio::io_context io{1};
  std::optional<tcp::acceptor> tcpAcceptor;
  std::optional<unix_socket::acceptor> unixAcceptor;
  asio::steady_timer backoff{io};
  std::chrono::milliseconds backoffDelay{0};
  std::thread thread;
  // Server thread only: open connections, per peer, and how to close them.
  size_t connections = 0;
  std::map<std::string, size_t> perPeer;
  std::map<uint64_t, std::function<void()>> closers;
  uint64_t nextSession = 0;
  size_t responseBytes = 0;  // bodies rendered and not yet written
  std::atomic<uint64_t> acceptErrors{0};
  bool stopping = false;
  uint16_t port = 0;

  void accept();
  template <class Socket>
  void accepted(beast::error_code ec, Socket s);
  void shutdown();
};

namespace {

std::string peerOf(tcp::socket& s) {
  beast::error_code ec;
  auto ep = s.remote_endpoint(ec);
  return ec ? std::string("?") : ep.address().to_string();
}

// A UNIX socket's peer is its uid: every connection of one user counts
// against one limit, whatever process opens it.
std::string peerOf(unix_socket::socket& s) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(s.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return "uid ?";
  return "uid " + std::to_string(cred.uid);
}

template <class Protocol>
class Session : public std::enable_shared_from_this<Session<Protocol>> {
 public:
  using Stream = beast::basic_stream<Protocol>;
  Session(typename Protocol::socket s, HttpServer::Impl& server, std::string peer)
      : stream_(std::move(s)), server_(server), peer_(std::move(peer)), id_(server.nextSession++) {
    ++server_.connections;
    ++server_.perPeer[peer_];
  }
  ~Session() {
    --server_.connections;
    if (auto it = server_.perPeer.find(peer_); it != server_.perPeer.end() && --it->second == 0)
      server_.perPeer.erase(it);
    server_.closers.erase(id_);
  }

  void begin(std::chrono::milliseconds timeout) {
    server_.closers[id_] = [w = this->weak_from_this()] {
      if (auto self = w.lock()) self->close();
    };
    start(timeout);
  }

 private:
  void start(std::chrono::milliseconds timeout) {
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(server_.options.maxHeaderBytes));
    parser_->body_limit(server_.options.maxBodyBytes);
    stream_.expires_after(timeout);
    http::async_read(
        stream_, buffer_, *parser_,
        [self = this->shared_from_this()](beast::error_code ec, size_t) { self->onRead(ec); });
  }

  void onRead(beast::error_code ec) {
    head_ = false;
    if (ec == http::error::header_limit) return reply(431, "request header too large\n", false);
    if (ec == http::error::body_limit) return reply(413, "request body not accepted\n", false);
    if (ec == beast::error::timeout || ec == http::error::end_of_stream || ec == asio::error::eof ||
        ec == asio::error::connection_reset || ec == asio::error::operation_aborted) {
      return close();
    }
    if (ec) return reply(400, "bad request\n", false);
    const auto& req = parser_->get();
    // HEAD is known before anything is routed or rendered: every answer to
    // this request, errors included, goes out without a body.
    head_ = req.method() == http::verb::head;
    keepAlive_ = req.keep_alive();
    if (req.method() != http::verb::get && !head_) return reply(405, "only GET\n", keepAlive_);
    HttpRequest r;
    r.method = std::string(req.method_string());
    r.target = std::string(req.target());
    r.head = head_;
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
    // A HEAD answer carries no body and no Content-Length (RFC 9110 lets a
    // server omit it; computing it would mean rendering the body).
    if (!head_) {
      res->body() = std::move(body);
      res->prepare_payload();
    }
    // The body counts against maxResponseBytes until it is written, and the
    // client must take it at the minimum rate.
    const size_t bytes = res->body().size();
    server_.responseBytes += bytes;
    const auto rate = std::max<size_t>(1, server_.options.minWriteBytesPerSecond);
    stream_.expires_after(server_.options.readTimeout +
                          std::chrono::milliseconds(bytes * 1000 / rate));
    http::async_write(
        stream_, *res,
        [self = this->shared_from_this(), res, keepAlive, bytes](beast::error_code ec, size_t) {
          self->server_.responseBytes -= bytes;
          if (ec || !keepAlive || self->server_.stopping) return self->close();
          self->start(self->server_.options.idleTimeout);
        });
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(Protocol::socket::shutdown_both, ignored);
    stream_.close();
  }

  Stream stream_;
  HttpServer::Impl& server_;
  std::string peer_;
  uint64_t id_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::empty_body>> parser_;
  bool keepAlive_ = false;
  bool head_ = false;
};

}  // namespace

template <class Socket>
void HttpServer::Impl::accepted(beast::error_code ec, Socket s) {
  if (ec == asio::error::operation_aborted || stopping) return;
  if (ec) {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM, ECONNABORTED...: wait before the next
    // accept instead of spinning on an error that persists; the wait doubles
    // while errors repeat. A timer, so that open connections go on meanwhile.
    ++acceptErrors;
    backoffDelay = std::clamp(backoffDelay * 2, std::chrono::milliseconds(10),
                              std::chrono::milliseconds(1000));
    if (backoffDelay <= std::chrono::milliseconds(10) || backoffDelay >= std::chrono::seconds(1))
      spdlog::warn("HTTP {}: accept: {}; retrying in {} ms",
                   options.unixPath.empty() ? options.listen : options.unixPath, ec.message(),
                   backoffDelay.count());
    backoff.expires_after(backoffDelay);
    backoff.async_wait([this](beast::error_code e) {
      if (!e && !stopping) accept();
    });
    return;
  }
  backoffDelay = std::chrono::milliseconds(0);
  using Protocol = typename Socket::protocol_type;
  std::string peer = peerOf(s);
  const auto it = perPeer.find(peer);
  if (connections >= options.maxConnections ||
      (it != perPeer.end() && it->second >= options.maxConnectionsPerPeer)) {
    // Over a limit: refuse at once rather than queue.
    beast::error_code ignored;
    s.close(ignored);
  } else {
    std::make_shared<Session<Protocol>>(std::move(s), *this, std::move(peer))
        ->begin(options.readTimeout);
  }
  accept();
}

void HttpServer::Impl::accept() {
  if (tcpAcceptor)
    tcpAcceptor->async_accept(
        [this](beast::error_code ec, tcp::socket s) { accepted(ec, std::move(s)); });
  else
    unixAcceptor->async_accept(
        [this](beast::error_code ec, unix_socket::socket s) { accepted(ec, std::move(s)); });
}

void HttpServer::Impl::shutdown() {
  stopping = true;
  beast::error_code ignored;
  if (tcpAcceptor) tcpAcceptor->close(ignored);
  if (unixAcceptor) unixAcceptor->close(ignored);
  backoff.cancel();
  // Closing a session may erase it from closers: iterate over a copy.
  auto all = closers;
  for (auto& [id, close] : all) close();
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

namespace {

Result<> listenTcp(HttpServer::Impl& impl) {
  std::string host;
  uint16_t port = 0;
  const std::string& listen = impl.options.listen;
  if (!splitHostPort(listen, host, port))
    return makeError("listen address '" + listen + "' is not host:port");
  beast::error_code ec;
  const auto addr = asio::ip::make_address(host, ec);
  if (ec) return makeError("listen address '" + listen + "': '" + host + "' is not an IP address");
  const tcp::endpoint ep(addr, port);
  auto& a = impl.tcpAcceptor.emplace(impl.io);
  a.open(ep.protocol(), ec);
  if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(ep, ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return std::unexpected(Error{ec, "listen on " + listen});
  impl.port = a.local_endpoint().port();
  return {};
}

// Binds the UNIX socket. A socket file left by a daemon that died is
// replaced; one that a live process accepts on is refused by name, so two
// daemons never share (or steal) one admin socket.
Result<> listenUnix(HttpServer::Impl& impl) {
  const std::string& path = impl.options.unixPath;
  if (path.size() >= sizeof(sockaddr_un::sun_path))
    return makeError("admin socket path '" + path + "' is too long for a UNIX socket");
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return makeError("admin socket " + path + " exists and is not a socket");
    unix_socket::socket probe(impl.io);
    beast::error_code ec;
    probe.connect(unix_socket::endpoint(path), ec);
    if (!ec)
      return makeError("admin socket " + path +
                       " is in use by another process (another daemon? give each its own "
                       "[admin] socket)");
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
      return errnoError(errno, "remove stale admin socket " + path);
  }
  auto& a = impl.unixAcceptor.emplace(impl.io);
  beast::error_code ec;
  const unix_socket::endpoint ep(path);
  a.open(ep.protocol(), ec);
  // Created without any access for others; chmod/chown below open it.
  const mode_t old = ::umask(0177);
  if (!ec) a.bind(ep, ec);
  ::umask(old);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return std::unexpected(Error{ec, "listen on " + path});
  if (impl.options.unixGroup &&
      ::chown(path.c_str(), static_cast<uid_t>(-1), *impl.options.unixGroup) != 0)
    return errnoError(
        errno, "chown admin socket " + path + " to gid " + std::to_string(*impl.options.unixGroup));
  if (::chmod(path.c_str(), impl.options.unixMode) != 0)
    return errnoError(errno, "chmod admin socket " + path);
  return {};
}

}  // namespace

Result<std::unique_ptr<HttpServer>> HttpServer::start(HttpServerOptions options,
                                                      std::map<std::string, Handler> routes) {
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  impl->routes = std::move(routes);
  auto bound = impl->options.unixPath.empty() ? listenTcp(*impl) : listenUnix(*impl);
  if (!bound) return std::unexpected(bound.error());
  impl->accept();
  impl->thread = std::thread([p = impl.get()] { p->io.run(); });
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::~HttpServer() { stop(); }

uint16_t HttpServer::port() const { return impl_->port; }

uint64_t HttpServer::acceptErrors() const { return impl_->acceptErrors.load(); }

void HttpServer::stop() {
  if (!impl_ || !impl_->thread.joinable()) return;
  // On the server thread: no new connections, every open one closed. Its
  // pending operations then end (operation_aborted) and run() returns by
  // itself once none is left.
  asio::post(impl_->io, [p = impl_.get()] { p->shutdown(); });
  impl_->thread.join();
  if (!impl_->options.unixPath.empty()) ::unlink(impl_->options.unixPath.c_str());
}

}  // namespace xdplb::metrics
