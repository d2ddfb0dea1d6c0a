#include "lib/events/nats_tls.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <nats/nats.h>
#include <unistd.h>

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace berth::events {
namespace {

// The host of the first server in `url` ("nats://user@host:4222,nats://..."), without
// brackets around an IPv6 address; empty when there is none.
std::string FirstHost(absl::string_view url) {
  absl::string_view first = url.substr(0, url.find(','));
  first = absl::StripAsciiWhitespace(first);
  if (size_t scheme = first.find("://"); scheme != absl::string_view::npos) {
    first.remove_prefix(scheme + 3);
  }
  first = first.substr(0, first.find('/'));
  if (size_t at = first.rfind('@'); at != absl::string_view::npos) {
    first.remove_prefix(at + 1);
  }
  if (absl::ConsumePrefix(&first, "[")) {
    return std::string(first.substr(0, first.find(']')));
  }
  return std::string(first.substr(0, first.find(':')));
}

bool IsIpAddress(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

absl::Status Readable(const std::string& file, absl::string_view setting) {
  if (access(file.c_str(), R_OK) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(setting, " ", file, ": cannot be read (", strerror(errno), ")"));
  }
  return absl::OkStatus();
}

absl::Status Loaded(natsStatus s, absl::string_view setting, const std::string& file) {
  if (s == NATS_OK) {
    return absl::OkStatus();
  }
  const char* why = nats_GetLastError(nullptr);
  return absl::InvalidArgumentError(absl::StrCat(
      setting, " ", file, ": ", why != nullptr && *why != '\0' ? why : natsStatus_GetText(s)));
}

}  // namespace

bool NatsTls::Wanted(absl::string_view url) const {
  bool tls_url = false;
  for (absl::string_view server : absl::StrSplit(url, ',')) {
    tls_url = tls_url || absl::StartsWithIgnoreCase(absl::StripLeadingAsciiWhitespace(server),
                                                    "tls://");
  }
  return tls_url || !ca_file.empty() || !cert_file.empty() || !key_file.empty() ||
         !server_name.empty();
}

absl::Status ValidateNatsTls(const NatsTls& tls, absl::string_view url) {
  if (!tls.Wanted(url)) {
    return absl::OkStatus();
  }
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return absl::InvalidArgumentError(
        "nats_tls_cert and nats_tls_key go together: a client certificate needs its key");
  }
  if (absl::Status st = Readable(tls.ca_file.empty() ? kSystemCaBundle : tls.ca_file,
                                 tls.ca_file.empty() ? "the system CA bundle" : "nats_tls_ca");
      !st.ok()) {
    return st;
  }
  if (!tls.cert_file.empty()) {
    if (absl::Status st = Readable(tls.cert_file, "nats_tls_cert"); !st.ok()) {
      return st;
    }
    if (absl::Status st = Readable(tls.key_file, "nats_tls_key"); !st.ok()) {
      return st;
    }
  }
  return absl::OkStatus();
}

absl::Status ApplyNatsTls(natsOptions* opts, absl::string_view url, const NatsTls& tls) {
  if (absl::Status st = ValidateNatsTls(tls, url); !st.ok() || !tls.Wanted(url)) {
    return st;
  }
  natsStatus s = natsOptions_SetSecure(opts, true);
  if (s != NATS_OK) {
    return Loaded(s, "nats TLS", "(OpenSSL context)");
  }
  std::string ca = tls.ca_file.empty() ? kSystemCaBundle : tls.ca_file;
  if (absl::Status st = Loaded(natsOptions_LoadCATrustedCertificates(opts, ca.c_str()),
                               "nats_tls_ca", ca);
      !st.ok()) {
    return st;
  }
  if (!tls.cert_file.empty()) {
    if (absl::Status st = Loaded(natsOptions_LoadCertificatesChain(opts, tls.cert_file.c_str(),
                                                                   tls.key_file.c_str()),
                                 "nats_tls_cert/nats_tls_key", tls.cert_file);
        !st.ok()) {
      return st;
    }
  }
  // nats.c checks the name only when told which; an IP address cannot be checked this way
  // (the chain still is), so a host given by address needs server_name for a name check.
  std::string name = tls.server_name;
  if (name.empty()) {
    std::string host = FirstHost(url);
    if (!host.empty() && !IsIpAddress(host)) {
      name = host;
    }
  }
  if (!name.empty()) {
    s = natsOptions_SetExpectedHostname(opts, name.c_str());
    if (s != NATS_OK) {
      return Loaded(s, "nats_tls_server_name", name);
    }
  }
  return absl::OkStatus();
}

std::string ExplainNatsTlsFailure(std::string nats_error, bool tls) {
  std::string lower = absl::AsciiStrToLower(nats_error);
  if (absl::StrContains(lower, "hostname mismatch")) {
    absl::StrAppend(&nats_error,
                    " (the server's certificate does not carry the expected name: check "
                    "nats_tls_server_name or the host in nats_url)");
  } else if (absl::StrContains(lower, "certificate verify failed") ||
             absl::StrContains(lower, "unable to get local issuer") ||
             absl::StrContains(lower, "self-signed") || absl::StrContains(lower, "self signed")) {
    absl::StrAppend(&nats_error,
                    " (the server's certificate is not signed by a trusted CA: check "
                    "nats_tls_ca)");
  } else if (tls && absl::StrContains(lower, "expected 'pong', got ''")) {
    // TLS 1.3: a server that wants a client certificate checks it after the handshake and
    // then closes the connection, so the client only sees the connection end.
    absl::StrAppend(&nats_error,
                    " (the server closed the TLS connection: it may want a client certificate "
                    "signed by a CA it trusts, nats_tls_cert/nats_tls_key)");
  } else if (absl::StrContains(lower, "ssl") || absl::StrContains(lower, "tls")) {
    absl::StrAppend(&nats_error,
                    " (TLS with NATS failed: check nats_tls_ca, and nats_tls_cert/nats_tls_key "
                    "when the server verifies clients)");
  }
  return nats_error;
}

}  // namespace berth::events
