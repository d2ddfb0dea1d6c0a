#include "lib/events/nats_connection.h"

#include <nats/nats.h>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "lib/base/status_macros.h"

namespace berth::events {
namespace {

// The payload under which a connection error keeps nats.c's status, so callers decide on it
// rather than on the message.
constexpr char kNatsStatusPayload[] = "berth.events/natsStatus";

absl::Status WithNatsStatus(absl::Status st, natsStatus s) {
  st.SetPayload(kNatsStatusPayload, absl::Cord(absl::StrCat(static_cast<int>(s))));
  return st;
}

absl::Status OptionsError(natsStatus s) {
  return absl::InvalidArgumentError(absl::StrCat("nats options: ", NatsErrorText(s)));
}

}  // namespace

void NatsOptionsDeleter::operator()(natsOptions* opts) const { natsOptions_Destroy(opts); }

std::string NatsErrorText(int status) {
  natsStatus s = static_cast<natsStatus>(status);
  const char* text = nats_GetLastError(nullptr);
  if (text != nullptr && *text != '\0') {
    return absl::StrCat(natsStatus_GetText(s), ": ", text);
  }
  return natsStatus_GetText(s);
}

absl::StatusOr<NatsCredentials> ParseNatsCredentials(absl::string_view text) {
  if (text.empty()) {
    return NatsCredentials{};
  }
  size_t colon = text.find(':');
  if (colon == absl::string_view::npos || colon == 0) {
    return absl::InvalidArgumentError("nats credentials: want \"user:password\"");
  }
  return NatsCredentials{std::string(text.substr(0, colon)), std::string(text.substr(colon + 1))};
}

absl::StatusOr<NatsOptionsPtr> NewNatsOptions(const NatsEndpoint& endpoint) {
  natsOptions* raw = nullptr;
  if (natsStatus s = natsOptions_Create(&raw); s != NATS_OK) {
    return OptionsError(s);
  }
  NatsOptionsPtr opts(raw);
  natsStatus s = natsOptions_SetURL(raw, endpoint.url.c_str());
  if (s == NATS_OK && !endpoint.client_name.empty()) {
    s = natsOptions_SetName(raw, endpoint.client_name.c_str());
  }
  if (s == NATS_OK && !endpoint.credentials.empty()) {
    s = natsOptions_SetUserInfo(raw, endpoint.credentials.user.c_str(),
                                endpoint.credentials.password.c_str());
  }
  if (s == NATS_OK) {
    s = natsOptions_SetSendAsap(raw, true);
  }
  if (s != NATS_OK) {
    return OptionsError(s);
  }
  BERTH_RETURN_IF_ERROR(ApplyNatsTls(raw, endpoint.url, endpoint.tls));
  return opts;
}

absl::StatusOr<natsConnection*> ConnectNats(natsOptions* opts, const NatsEndpoint& endpoint) {
  natsConnection* conn = nullptr;
  natsStatus s = natsConnection_Connect(&conn, opts);
  if (s == NATS_OK) {
    return conn;
  }
  std::string why = NatsErrorText(s);
  if (conn != nullptr) {
    natsConnection_Destroy(conn);
  }
  switch (s) {
    case NATS_CONNECTION_AUTH_FAILED:
      return WithNatsStatus(absl::UnauthenticatedError(NatsLoginRefused(endpoint, why)), s);
    case NATS_SSL_ERROR:
    case NATS_SECURE_CONNECTION_WANTED:
    case NATS_SECURE_CONNECTION_REQUIRED:
      // Not worth retrying: a certificate or a server without TLS does not mend itself.
      return WithNatsStatus(
          absl::FailedPreconditionError(absl::StrCat(
              "TLS with NATS at ", endpoint.url, ": ", ExplainNatsTlsFailure(why, true))),
          s);
    default:
      return WithNatsStatus(
          absl::UnavailableError(
              absl::StrCat("cannot connect to NATS at ", endpoint.url, ": ",
                           ExplainNatsTlsFailure(why, endpoint.tls.Wanted(endpoint.url)))),
          s);
  }
}

bool NatsNotReachable(const absl::Status& status) {
  auto payload = status.GetPayload(kNatsStatusPayload);
  int s = 0;
  return payload.has_value() && absl::SimpleAtoi(std::string(*payload), &s) &&
         s == NATS_NO_SERVER;
}

std::string NatsLoginRefused(const NatsEndpoint& endpoint, absl::string_view why) {
  return absl::StrCat(
      "NATS at ", endpoint.url, " refused ",
      endpoint.credentials.empty()
          ? std::string("a connection without credentials")
          : absl::StrCat("the credentials of user \"", endpoint.credentials.user, "\""),
      " (", why, ")");
}

}  // namespace berth::events
