// A self-signed certificate (its own CA) made in memory with OpenSSL, for the
// TLS servers of the tests and of bench_health: nothing is written to disk
// unless a caller writes the PEM text itself.
#pragma once

#include <string>

namespace xdplb::testing {

struct SelfSignedPem {
  std::string cert, key;  // PEM: the certificate, the private key (EC P-256)
};

// For `name` (CN and DNS subjectAltName), valid from an hour ago for an hour,
// CA:TRUE so it verifies as its own chain.
SelfSignedPem selfSignedCertificate(const std::string& name);

}  // namespace xdplb::testing
