#pragma once

// The HTTP layer under RegistryClient (lib/images/registry_client.h): one request to a
// registry with its host's TLS settings, the auth dance (Basic, Bearer tokens cached per
// scope) and retries with backoff. Internal to berth_registry.

#include <curl/curl.h>

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "lib/base/byte_stream.h"
#include "lib/base/context.h"
#include "lib/images/curl_engine.h"
#include "lib/images/registry_auth.h"
#include "lib/images/registry_client.h"

namespace berth::images {

struct HttpResponse;

struct HttpRequest {
  std::string host;   // the registry host whose config and credentials apply
  // The endpoint's config (hosts.toml), used instead of options.hosts[host] when set; it must
  // outlive the call.
  const RegistryHostConfig* config = nullptr;
  // The token scope(s) this request needs, space-separated ("repository:a:pull,push
  // repository:b:pull"); empty for a request that needs none (GET /v2/).
  std::string scope;
  std::string url;
  bool head = false;
  std::string method;  // "POST", "PUT", "PATCH"; empty: GET (or HEAD with `head`)
  // A request body of `body_size` bytes: opened anew for each attempt (a retry or the repeat
  // after an auth challenge sends it again from its start). An error opening or reading it
  // lands in write_status. `on_sent` sees the bytes handed to the connection so far.
  std::function<absl::StatusOr<std::unique_ptr<ByteSource>>()> body;
  int64_t body_size = 0;
  std::function<void(int64_t sent)> on_sent;
  std::vector<std::string> headers;  // "Name: value"
  // Without on_data, a 2xx body is collected into HttpResponse::body up to max_body bytes (a
  // larger Content-Length, or more bytes, set write_status InvalidArgument and cut the
  // transfer). Error bodies are always collected (up to 64 KiB).
  int64_t max_body = 0;
  // For streaming: on_start sees the status and headers of a 200/206 before its first byte,
  // on_data each piece. An error from either cuts the transfer and lands in write_status.
  std::function<absl::Status(const HttpResponse&)> on_start;
  std::function<absl::Status(absl::string_view)> on_data;
};

struct HttpResponse {
  long code = 0;
  std::map<std::string, std::string> headers;  // names lowercased; the final response's
  std::string body;
  absl::Status write_status;   // what on_start/on_data/max_body refused
  bool transfer_ok = false;    // the body arrived whole
  std::string transfer_error;  // curl's reason when not
  int64_t streamed = 0;        // bytes handed to on_data
  CURLcode curl_code = CURLE_OK;

  absl::string_view Header(absl::string_view name) const {
    auto it = headers.find(std::string(name));
    return it == headers.end() ? absl::string_view() : absl::string_view(it->second);
  }
};

// The registry's own words for a failed request (distribution's "errors" body, else the start
// of the body, else the status) as the status its HTTP code stands for: 401 Unauthenticated,
// 403 PermissionDenied, 404 NotFound, 400/405/416 InvalidArgument, 429 and 5xx Unavailable,
// anything else Unknown. The message starts "registry <host>: <what>: ".
absl::Status RegistryError(absl::string_view host, absl::string_view what,
                           const HttpResponse& resp);

// Thread-safe. Every request runs on one CurlEngine (lib/images/curl_engine.h): one libcurl
// multi handle and its loop thread, whose connections all requests share (HTTP/2 ones as
// streams). Destroying it while calls run ends their transfers: those calls return
// Unavailable, and the destructor waits until they have.
class RegistryHttp {
 public:
  explicit RegistryHttp(RegistryClientOptions options);
  ~RegistryHttp();
  RegistryHttp(const RegistryHttp&) = delete;
  RegistryHttp& operator=(const RegistryHttp&) = delete;

  // Sends `req`, authenticating when challenged (once per call), retrying failed connections,
  // 429 and 5xx up to max_attempts. Returns the final response whatever its status code; an
  // error only when no usable response came: Unavailable (unreachable, TLS failure, still
  // 5xx/429 after the last attempt), Unauthenticated/PermissionDenied (auth failed), or the
  // context's error. A transfer that dropped after on_data received bytes is not retried: the
  // response comes back with transfer_ok false, so the caller can resume with Range.
  absl::StatusOr<HttpResponse> Do(const Context& ctx, HttpRequest req);

  // Sleeps the backoff before attempt `attempt` + 1; the context's error if it ends first.
  absl::Status Backoff(const Context& ctx, int attempt) const;
  int max_attempts() const { return options_.max_attempts; }
  const RegistryClientOptions& options() const { return options_; }
  CurlEngine& engine() { return engine_; }

 private:
  const RegistryHostConfig& HostConfig(absl::string_view host) const;
  const RegistryHostConfig& ConfigFor(const HttpRequest& req) const {
    return req.config != nullptr ? *req.config : HostConfig(req.host);
  }
  // One exchange; no auth dance, no retry.
  HttpResponse Perform(const Context& ctx, const HttpRequest& req,
                       const std::string& authorization, const RegistryHostConfig& config);
  std::string Authorization(const HttpRequest& req) const;
  // Answers a 401's challenge: remembers Basic for the host, or fetches a Bearer token.
  absl::Status Authenticate(const Context& ctx, const HttpRequest& req,
                            const HttpResponse& challenge);
  // One exchange with a token server for `req`'s host (FetchBearerToken's transport).
  TokenReply ExchangeToken(const Context& ctx, const HttpRequest& req,
                           const TokenExchange& exchange);
  absl::Time Now() const { return options_.clock ? options_.clock() : absl::Now(); }

  const RegistryClientOptions options_;
  const RegistryHostConfig default_host_;
  TokenCache tokens_;
  mutable absl::Mutex mu_;
  std::set<std::string> basic_hosts_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;  // being destroyed
  int calls_ ABSL_GUARDED_BY(mu_) = 0;          // Do calls running
  CurlEngine engine_;  // last: stopped first
};

}  // namespace berth::images
