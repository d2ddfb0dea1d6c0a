#pragma once

// TLS to NATS, one setting for every berth process that connects to the bus (each daemon's
// NatsPublisher, eventd's JetStreamLog). TLS is on when the URL says tls:// or any file is
// set, and also when the server requires it (nats.c then upgrades on its own, with the same
// verification). The server's certificate is always verified: against ca_file, or the system's
// trust store when none is given; and its name against server_name, or the URL's host when
// that is a DNS name. There is no switch to skip verification.

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

struct __natsOptions;

namespace berth::events {

struct NatsTls {
  std::string ca_file;      // PEM bundle the server's certificate must chain to
  std::string cert_file;    // PEM client certificate, for servers that verify clients
  std::string key_file;     // its private key (required with cert_file)
  std::string server_name;  // the name the server's certificate must carry

  // Whether the client asks for TLS itself (given `url`).
  bool Wanted(absl::string_view url) const;
};

// The system's CA bundle, used when ca_file is empty.
inline constexpr char kSystemCaBundle[] = "/etc/ssl/certs/ca-certificates.crt";

// InvalidArgument naming the setting and file when a file is missing or unreadable, or
// key_file/cert_file is given without the other. OK (and nothing to check) when TLS is off.
absl::Status ValidateNatsTls(const NatsTls& tls, absl::string_view url);

// Sets up TLS on nats.c options for `url` (secure, trusted CAs, client chain, expected name);
// does nothing when TLS is off. Errors as ValidateNatsTls, and InvalidArgument when nats.c
// cannot load a file (its reason, e.g. not PEM).
absl::Status ApplyNatsTls(__natsOptions* opts, absl::string_view url, const NatsTls& tls);

// Adds a hint to a connection failure that came from TLS: which setting to look at. `tls`:
// whether this client asked for TLS. Other failures come back unchanged.
std::string ExplainNatsTlsFailure(std::string nats_error, bool tls);

}  // namespace berth::events
