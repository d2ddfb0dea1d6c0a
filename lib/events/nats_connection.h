#pragma once

// Connecting to NATS, once for every berth process on the bus (each daemon's NatsPublisher,
// eventd's JetStreamLog): the URL, the client name, the credentials, TLS (nats_tls.h), and what
// a refused login or a failed handshake is called. Each caller adds its own reconnect policy
// and callbacks to the options before connecting.

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/events/nats_tls.h"

struct __natsOptions;
struct __natsConnection;

namespace berth::events {

// "user:password" split once; both empty for no authentication.
struct NatsCredentials {
  std::string user;
  std::string password;
  bool empty() const { return user.empty(); }
};

// Parses nats_credentials. Empty text: no authentication. InvalidArgument unless it is
// "user:password" with a non-empty user (the password may be empty or hold ':').
absl::StatusOr<NatsCredentials> ParseNatsCredentials(absl::string_view text);

// Where and as whom to connect.
struct NatsEndpoint {
  std::string url;          // nats://host:port[,...] or tls://...
  NatsCredentials credentials;
  NatsTls tls;
  std::string client_name;  // shown by the server (connz); empty: none
};

struct NatsOptionsDeleter {
  void operator()(__natsOptions* opts) const;
};
using NatsOptionsPtr = std::unique_ptr<__natsOptions, NatsOptionsDeleter>;

// nats.c options for `endpoint`: URL, name, user and password, TLS, and each publish written
// at once (SendAsap: nats.c's flusher thread would add ~1 ms per publish, bench/README.md).
// Reconnects and callbacks are the caller's. Errors: InvalidArgument for TLS files that cannot
// be read or loaded (ApplyNatsTls) or options nats.c refuses.
absl::StatusOr<NatsOptionsPtr> NewNatsOptions(const NatsEndpoint& endpoint);

// One connection attempt with `opts` (made by NewNatsOptions). Errors, by what nats.c
// reports (its status, never its message text):
//   Unauthenticated: the server refused the credentials (or their absence); the message is
//     NatsLoginRefused's.
//   FailedPrecondition: TLS failed (the server's certificate is untrusted or not for this
//     name, the server wants a client certificate, or it offers no TLS); the message says
//     which setting to look at.
//   Unavailable: no server answered (NotReachable) or the connection failed otherwise.
absl::StatusOr<__natsConnection*> ConnectNats(__natsOptions* opts, const NatsEndpoint& endpoint);

// Whether a ConnectNats error means no server answered at all (worth waiting for), as
// opposed to one that answered and refused or failed.
bool NatsNotReachable(const absl::Status& status);

// "NATS at <url> refused the credentials of user "<user>" (<why>)", or "... refused a
// connection without credentials (<why>)": the one wording of a refused login.
std::string NatsLoginRefused(const NatsEndpoint& endpoint, absl::string_view why);

// nats.c's last error for `s` on this thread: "<status text>: <detail>" or the status text.
std::string NatsErrorText(int s);

}  // namespace berth::events
