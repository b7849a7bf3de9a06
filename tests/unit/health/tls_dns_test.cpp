// https and dns checks against real local servers on loopback: a TLS server
// (Boost.Asio's SSL stream, a certificate made here with OpenSSL) and a DNS
// responder (UDP and TCP) whose rcode and id each test picks.
#include <arpa/nameser.h>
#include <gtest/gtest.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <cstdio>
#include <filesystem>
#include <functional>

#include "lb/health/checker.h"
#include "support/tls_cert.h"

namespace xdplb::health {
namespace {
namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using udp = asio::ip::udp;
using namespace std::chrono_literals;

// A self-signed certificate for `name` (its own CA), written as PEM files
// (the checker reads its ca_file from disk).
struct Certificate {
  std::string dir, cert, key;
  explicit Certificate(const std::string& name) {
    char tmpl[] = "/tmp/xdplb-tls-XXXXXX";
    dir = ::mkdtemp(tmpl);
    cert = dir + "/cert.pem";
    key = dir + "/key.pem";
    const auto pem = testing::selfSignedCertificate(name);
    for (auto [path, text] : {std::pair{&cert, &pem.cert}, std::pair{&key, &pem.key}}) {
      FILE* f = std::fopen(path->c_str(), "w");
      std::fwrite(text->data(), 1, text->size(), f);
      std::fclose(f);
    }
  }
  ~Certificate() { std::filesystem::remove_all(dir); }
};

// HTTPS: one canned answer per connection; records the SNI each client sent.
class TlsServer {
 public:
  TlsServer(asio::io_context& io, const Certificate& c, std::string reply)
      : ctx_(ssl::context::tls_server),
        acceptor_(io, {asio::ip::make_address("127.0.0.1"), 0}),
        reply_(std::move(reply)) {
    ctx_.use_certificate_chain_file(c.cert);
    ctx_.use_private_key_file(c.key, ssl::context::pem);
    SSL_CTX_set_tlsext_servername_callback(ctx_.native_handle(), &TlsServer::onServerName);
    SSL_CTX_set_tlsext_servername_arg(ctx_.native_handle(), this);
    accept();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  std::vector<std::string> serverNames;  // "" when none was sent
  size_t handshakes = 0;

 private:
  static int onServerName(SSL* s, int*, void* arg) {
    const char* name = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
    static_cast<TlsServer*>(arg)->serverNames.emplace_back(name ? name : "");
    return SSL_TLSEXT_ERR_OK;
  }
  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket sock) {
      if (ec) return;
      auto s = std::make_shared<ssl::stream<tcp::socket>>(std::move(sock), ctx_);
      s->async_handshake(ssl::stream_base::server, [this, s](boost::system::error_code ec) {
        if (ec) return;
        ++handshakes;
        auto buf = std::make_shared<std::array<char, 2048>>();
        s->async_read_some(
            asio::buffer(*buf), [this, s, buf](boost::system::error_code ec, size_t) {
              if (ec) return;
              asio::async_write(*s, asio::buffer(reply_), [s](boost::system::error_code, size_t) {
                s->async_shutdown([s](boost::system::error_code) {});
              });
            });
      });
      accept();
    });
  }
  ssl::context ctx_;
  tcp::acceptor acceptor_;
  std::string reply_;
};

// DNS: answers every query over UDP and TCP with `rcode`, echoing its id
// (plus `idOffset`: a reply that is not the answer to the query).
class DnsServer {
 public:
  explicit DnsServer(asio::io_context& io)
      : udp_(io, {asio::ip::make_address("127.0.0.1"), 0}),
        tcp_(io, {asio::ip::make_address("127.0.0.1"), udp_.local_endpoint().port()}) {
    receive();
    accept();
  }
  uint16_t port() const { return udp_.local_endpoint().port(); }
  uint8_t rcode = 0;
  uint16_t idOffset = 0;
  std::vector<std::string> names;  // the question names received
  std::vector<uint16_t> types;
  size_t overTcp = 0;
  bool recursionDesired = false;

 private:
  std::vector<uint8_t> answer(const uint8_t* q, size_t n) {
    ns_msg msg;
    if (ns_initparse(q, static_cast<int>(n), &msg) != 0) return {};
    recursionDesired = ns_msg_getflag(msg, ns_f_rd) != 0;
    ns_rr rr;
    if (ns_parserr(&msg, ns_s_qd, 0, &rr) == 0) {
      names.emplace_back(ns_rr_name(rr));
      types.push_back(ns_rr_type(rr));
    }
    std::vector<uint8_t> a(q, q + n);  // the question back, no answer records
    const uint16_t id = static_cast<uint16_t>(((a[0] << 8) | a[1]) + idOffset);
    a[0] = static_cast<uint8_t>(id >> 8);
    a[1] = static_cast<uint8_t>(id);
    a[2] |= 0x80;                                        // QR
    a[3] = static_cast<uint8_t>((a[3] & 0xf0) | rcode);  // RCODE
    return a;
  }
  void receive() {
    udp_.async_receive_from(
        asio::buffer(buf_), peer_, [this](boost::system::error_code ec, size_t n) {
          if (ec) return;
          auto a = std::make_shared<std::vector<uint8_t>>(answer(buf_.data(), n));
          udp_.async_send_to(asio::buffer(*a), peer_, [a](boost::system::error_code, size_t) {});
          receive();
        });
  }
  void accept() {
    tcp_.async_accept([this](boost::system::error_code ec, tcp::socket sock) {
      if (ec) return;
      auto s = std::make_shared<tcp::socket>(std::move(sock));
      auto len = std::make_shared<std::array<uint8_t, 2>>();
      asio::async_read(
          *s, asio::buffer(*len), [this, s, len](boost::system::error_code ec, size_t) {
            if (ec) return;
            auto q = std::make_shared<std::vector<uint8_t>>(((*len)[0] << 8) | (*len)[1]);
            asio::async_read(
                *s, asio::buffer(*q), [this, s, q](boost::system::error_code ec, size_t) {
                  if (ec) return;
                  ++overTcp;
                  auto a = std::make_shared<std::vector<uint8_t>>(answer(q->data(), q->size()));
                  a->insert(a->begin(), {static_cast<uint8_t>((a->size()) >> 8),
                                         static_cast<uint8_t>(a->size())});
                  asio::async_write(*s, asio::buffer(*a),
                                    [s, a](boost::system::error_code, size_t) {});
                });
          });
      accept();
    });
  }
  udp::socket udp_;
  tcp::acceptor tcp_;
  std::array<uint8_t, 4096> buf_{};
  udp::endpoint peer_;
};

class TlsDnsTest : public ::testing::Test {
 protected:
  CheckSpec spec(CheckType type, uint16_t port) {
    CheckSpec s;
    s.type = type;
    s.address = *IpAddr::parse("127.0.0.1");
    s.port = port;
    s.interval = 100ms;
    s.timeout = 80ms;
    s.rise = 1;
    s.fall = 1;
    return s;
  }
  // Runs the loop until the check has a result, and returns its reason.
  std::string firstResult(CheckId id) {
    const auto end = std::chrono::steady_clock::now() + 3s;
    while (!checker.lastResult(id) && std::chrono::steady_clock::now() < end) io.run_for(5ms);
    return checker.lastResult(id) ? checker.lastResult(id)->reason : "no result in 3 s";
  }

  asio::io_context io;
  HealthChecker checker{io, [](const Event&) {}};
  const std::string k200 = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
};

TEST_F(TlsDnsTest, HttpsUpOnTheStatusWithSniAndNoVerification) {
  Certificate cert("backend.example");
  TlsServer srv(io, cert, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
  auto s = spec(CheckType::Https, srv.port());
  s.sni = "backend.example";
  s.expect = {200};
  const auto id = checker.add(s);
  EXPECT_EQ(firstResult(id), "status 503");  // the handshake went through, the status decides
  EXPECT_EQ(checker.state(id), State::Down);
  ASSERT_FALSE(srv.serverNames.empty());
  EXPECT_EQ(srv.serverNames[0], "backend.example");

  TlsServer ok(io, cert, k200);
  auto s2 = spec(CheckType::Https, ok.port());  // no sni: none sent
  const auto id2 = checker.add(s2);
  EXPECT_EQ(firstResult(id2), "ok");
  EXPECT_EQ(checker.state(id2), State::Up);
  ASSERT_FALSE(ok.serverNames.empty());
  EXPECT_EQ(ok.serverNames[0], "");
}

TEST_F(TlsDnsTest, HttpsVerifiesAgainstTheCaFileAndTheName) {
  Certificate cert("backend.example");
  Certificate other("other.example");
  TlsServer srv(io, cert, k200);
  // The right CA and name: up.
  auto s = spec(CheckType::Https, srv.port());
  s.sni = "backend.example";
  s.caFile = cert.cert;
  EXPECT_EQ(firstResult(checker.add(s)), "ok");
  // Another CA: the chain does not verify.
  auto wrongCa = s;
  wrongCa.caFile = other.cert;
  const auto idCa = checker.add(wrongCa);
  EXPECT_EQ(firstResult(idCa), "tls: certificate verify failed");
  EXPECT_EQ(checker.state(idCa), State::Down);
  // The right CA, another name: the name does not verify.
  auto wrongName = s;
  wrongName.sni = "www.example";
  EXPECT_EQ(firstResult(checker.add(wrongName)), "tls: certificate verify failed");
  // A CA file that cannot be read is local trouble, not the backend's fault.
  auto missing = s;
  missing.caFile = cert.dir + "/missing.pem";
  const auto idMissing = checker.add(missing);
  const std::string r = firstResult(idMissing);
  EXPECT_NE(r.find("missing.pem"), std::string::npos) << r;
  EXPECT_TRUE(checker.lastResult(idMissing)->local);
  EXPECT_EQ(checker.state(idMissing), State::Unknown);
}

TEST_F(TlsDnsTest, HttpsAgainstAPlainHttpServerFails) {
  tcp::acceptor plain(io, {asio::ip::make_address("127.0.0.1"), 0});
  tcp::socket peer(io);
  plain.async_accept(peer, [&](boost::system::error_code ec) {
    if (ec) return;
    static const std::string reply =
        "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    asio::async_write(peer, asio::buffer(reply), [&](boost::system::error_code, size_t) {
      boost::system::error_code ignored;
      peer.close(ignored);
    });
  });
  const auto id = checker.add(spec(CheckType::Https, plain.local_endpoint().port()));
  const std::string r = firstResult(id);
  EXPECT_EQ(r.rfind("tls: ", 0), 0u) << r;
  EXPECT_EQ(checker.state(id), State::Down);
}

TEST_F(TlsDnsTest, DnsUpOnAnAcceptedRcodeOverUdpAndTcp) {
  DnsServer dns(io);
  auto s = spec(CheckType::Dns, dns.port());
  s.queryName = "www.example.com";
  s.queryType = 28;  // AAAA
  const auto id = checker.add(s);
  EXPECT_EQ(firstResult(id), "ok");
  EXPECT_EQ(checker.state(id), State::Up);
  ASSERT_EQ(dns.names.size(), 1u);
  EXPECT_EQ(dns.names[0], "www.example.com");
  EXPECT_EQ(dns.types[0], 28);
  EXPECT_TRUE(dns.recursionDesired);
  EXPECT_EQ(dns.overTcp, 0u);

  auto t = s;
  t.dnsOverTcp = true;
  EXPECT_EQ(firstResult(checker.add(t)), "ok");
  EXPECT_EQ(dns.overTcp, 1u);
}

TEST_F(TlsDnsTest, DnsRcodesDecide) {
  DnsServer dns(io);
  dns.rcode = 2;  // SERVFAIL
  auto s = spec(CheckType::Dns, dns.port());
  s.queryName = "example.com";
  const auto id = checker.add(s);
  EXPECT_EQ(firstResult(id), "rcode SERVFAIL");
  EXPECT_EQ(checker.state(id), State::Down);
  // NXDOMAIN accepted (a server asked for a name it need not have).
  dns.rcode = 3;
  auto nx = s;
  nx.rcodes = {0, 3};
  EXPECT_EQ(firstResult(checker.add(nx)), "ok");
  auto strict = s;
  EXPECT_EQ(firstResult(checker.add(strict)), "rcode NXDOMAIN");
}

TEST_F(TlsDnsTest, DnsIgnoresRepliesWithAnotherIdAndTimesOut) {
  DnsServer dns(io);
  dns.idOffset = 1;
  auto s = spec(CheckType::Dns, dns.port());
  s.queryName = "example.com";
  const auto id = checker.add(s);
  EXPECT_EQ(firstResult(id), "timeout");
  // It was asked, and answered with the wrong id (under a sanitizer the
  // next probe may already have asked again).
  EXPECT_GE(dns.names.size(), 1u);
}

TEST_F(TlsDnsTest, DnsToAClosedUdpPortIsRefused) {
  uint16_t port;
  {
    udp::socket s(io, {asio::ip::make_address("127.0.0.1"), 0});
    port = s.local_endpoint().port();
  }
  auto s = spec(CheckType::Dns, port);
  s.queryName = "example.com";
  EXPECT_EQ(firstResult(checker.add(s)), "refused");
}

TEST_F(TlsDnsTest, DnsNameThatCannotBeEncodedIsLocalTrouble) {
  auto s = spec(CheckType::Dns, 53);
  s.queryName = std::string(300, 'a');  // over 255 bytes: res_mkquery refuses it
  const auto id = checker.add(s);
  const std::string r = firstResult(id);
  EXPECT_NE(r.find("cannot encode"), std::string::npos) << r;
  EXPECT_TRUE(checker.lastResult(id)->local);
}

// probe_size: the request is padded to one full segment of that size (the
// e2e test shows the size on a real path); the server still answers it.
TEST_F(TlsDnsTest, HttpProbeSizePadsTheRequestToOneFullSegment) {
  tcp::acceptor acc(io, {asio::ip::make_address("127.0.0.1"), 0});
  tcp::socket peer(io);
  asio::streambuf in;
  size_t requestBytes = 0;
  bool timestamps = false;
  std::string request;
  acc.async_accept(peer, [&](boost::system::error_code ec) {
    if (ec) return;
    tcp_info info{};
    socklen_t len = sizeof info;
    ASSERT_EQ(::getsockopt(peer.native_handle(), IPPROTO_TCP, TCP_INFO, &info, &len), 0);
    timestamps = (info.tcpi_options & TCPI_OPT_TIMESTAMPS) != 0;
    asio::async_read_until(peer, in, "\r\n\r\n", [&](boost::system::error_code ec, size_t n) {
      if (ec) return;
      requestBytes = n;
      request.assign(asio::buffers_begin(in.data()), asio::buffers_begin(in.data()) + n);
      asio::async_write(peer, asio::buffer(k200), [&](boost::system::error_code, size_t) {
        boost::system::error_code ignored;
        peer.close(ignored);
      });
    });
  });
  auto s = spec(CheckType::Http, acc.local_endpoint().port());
  s.probeSize = 1400;
  EXPECT_EQ(firstResult(checker.add(s)), "ok");
  // One segment: 1400 bytes of IP less the IPv4 and TCP headers and, when
  // the connection has them, the 12 bytes of the timestamp option.
  EXPECT_EQ(requestBytes, 1400u - 40 - (timestamps ? 12 : 0));
  EXPECT_NE(request.find("\r\nX-Xdplb-Padding: xxx"), std::string::npos);
  EXPECT_EQ(request.rfind("GET / HTTP/1.1\r\n", 0), 0u);
}

}  // namespace
}  // namespace xdplb::health
