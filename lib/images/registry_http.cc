#include "lib/images/registry_http.h"

#include <algorithm>
#include <vector>
#include <cstdlib>
#include <mutex>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include <nlohmann/json.hpp>

#include "lib/base/logging.h"
#include "lib/base/status_macros.h"

namespace berth::images {
namespace {

constexpr int64_t kMaxErrorBody = 64 * 1024;

// The state one transfer's handlers share. OnHeader runs on the engine's loop thread, the
// rest on the caller's; the headers are complete before the first body byte reaches the caller.
struct Transfer {
  const HttpRequest* req;
  HttpResponse* resp;
  long header_code = 0;  // the status line's, from OnHeader
  bool started = false;
  bool success = false;  // a 2xx whose body is wanted
  ByteSource* body = nullptr;
};

size_t OnHeader(char* data, size_t size, size_t count, void* arg) {
  auto* t = static_cast<Transfer*>(arg);
  absl::string_view line(data, size * count);
  line = absl::StripTrailingAsciiWhitespace(line);
  if (absl::StartsWith(line, "HTTP/")) {
    t->resp->headers.clear();  // a new response (after a redirect or a 100 Continue)
    std::vector<absl::string_view> parts = absl::StrSplit(line, absl::MaxSplits(' ', 2));
    if (parts.size() < 2 || !absl::SimpleAtoi(parts[1], &t->header_code)) {
      t->header_code = 0;
    }
  } else if (size_t colon = line.find(':'); colon != absl::string_view::npos) {
    t->resp->headers[absl::AsciiStrToLower(line.substr(0, colon))] =
        std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
  }
  return size * count;
}

// Sets write_status (cutting the transfer) and reports whether the data may be taken.
bool Refuse(Transfer* t, absl::Status status) {
  t->resp->write_status = std::move(status);
  return false;
}

bool StartBody(Transfer* t) {
  t->started = true;
  t->resp->code = t->header_code;
  t->success = t->resp->code >= 200 && t->resp->code < 300;
  if (!t->success) {
    return true;
  }
  if (t->req->on_start) {
    absl::Status status = t->req->on_start(*t->resp);
    if (!status.ok()) {
      return Refuse(t, std::move(status));
    }
  } else if (!t->req->on_data) {
    int64_t length = 0;
    if (absl::SimpleAtoi(t->resp->Header("content-length"), &length) &&
        length > t->req->max_body) {
      return Refuse(t, absl::InvalidArgumentError(absl::StrCat(
                           t->req->url, ": ", length, " bytes, over the limit of ",
                           t->req->max_body)));
    }
  }
  return true;
}

// One piece of the body; false cuts the transfer.
bool OnBody(Transfer* t, absl::string_view data) {
  if (!t->started && !StartBody(t)) {
    return false;
  }
  if (!t->success || !t->req->on_data) {
    int64_t limit = t->success ? t->req->max_body : kMaxErrorBody;
    if (static_cast<int64_t>(t->resp->body.size() + data.size()) > limit) {
      if (!t->success) {
        return true;  // an error body: keep its start, drop the rest
      }
      return Refuse(t, absl::InvalidArgumentError(absl::StrCat(
                           t->req->url, ": more than the limit of ", limit, " bytes")));
    }
    t->resp->body.append(data.data(), data.size());
    return true;
  }
  absl::Status status = t->req->on_data(data);
  if (!status.ok()) {
    return Refuse(t, std::move(status));
  }
  t->resp->streamed += static_cast<int64_t>(data.size());
  return true;
}

bool IsTlsError(CURLcode code) {
  switch (code) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ISSUER_ERROR:
      return true;
    default:
      return false;
  }
}

std::string BasicAuthorization(const RegistryHostConfig& config) {
  return absl::StrCat("Basic ", absl::Base64Escape(
                                    absl::StrCat(config.username, ":", config.password)));
}

// The registry's own words for a failed request: the "errors" of distribution's error body
// ("MANIFEST_UNKNOWN: manifest unknown"), else the start of the body, else the status line.
std::string RegistryMessage(const HttpResponse& resp) {
  nlohmann::json doc = nlohmann::json::parse(resp.body, nullptr, /*allow_exceptions=*/false);
  std::vector<std::string> parts;
  if (doc.is_object() && doc.contains("errors") && doc["errors"].is_array()) {
    for (const auto& error : doc["errors"]) {
      if (!error.is_object()) {
        continue;
      }
      std::string code = error.value("code", "");
      std::string message = error.value("message", "");
      parts.push_back(code.empty() ? message : absl::StrCat(code, ": ", message));
    }
  }
  if (!parts.empty()) {
    return absl::StrJoin(parts, "; ");
  }
  std::string body(absl::StripAsciiWhitespace(resp.body.substr(0, 200)));
  return body.empty() ? absl::StrCat("HTTP ", resp.code) : absl::StrCat("HTTP ", resp.code, ": ", body);
}

}  // namespace

absl::Status RegistryError(absl::string_view host, absl::string_view what,
                           const HttpResponse& resp) {
  std::string message = absl::StrCat("registry ", host, ": ", what, ": ", RegistryMessage(resp));
  switch (resp.code) {
    case 401:
      return absl::UnauthenticatedError(message);
    case 403:
      return absl::PermissionDeniedError(message);
    case 404:
      return absl::NotFoundError(message);
    case 400:
    case 405:
    case 416:
      return absl::InvalidArgumentError(message);
    case 429:
      return absl::UnavailableError(message);
    default:
      return resp.code >= 500 ? absl::UnavailableError(message) : absl::UnknownError(message);
  }
}


namespace {

CurlEngineOptions EngineOptions(const RegistryClientOptions& options) {
  CurlEngineOptions engine;
  engine.max_host_connections = options.max_host_connections;
  engine.max_total_connections = options.max_total_connections;
  engine.buffer_limit = options.transfer_buffer;
  return engine;
}

}  // namespace

RegistryHttp::RegistryHttp(RegistryClientOptions options)
    : options_(std::move(options)), engine_(EngineOptions(options_)) {}

RegistryHttp::~RegistryHttp() {
  // Every transfer in flight ends (kStopped: its Do returns Unavailable), backoffs wake up;
  // then the calls still inside Do leave before the members they use go.
  engine_.Stop();
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  mu_.Await(absl::Condition(
      +[](int* calls) { return *calls == 0; }, &calls_));
}

const RegistryHostConfig& RegistryHttp::HostConfig(absl::string_view host) const {
  auto it = options_.hosts.find(std::string(host));
  return it == options_.hosts.end() ? default_host_ : it->second;
}

HttpResponse RegistryHttp::Perform(const Context& ctx, const HttpRequest& req,
                                   const std::string& authorization,
                                   const RegistryHostConfig& config) {
  HttpResponse resp;
  std::unique_ptr<ByteSource> body;
  if (req.body) {
    absl::StatusOr<std::unique_ptr<ByteSource>> opened = req.body();
    if (!opened.ok()) {
      resp.write_status = opened.status();
      resp.transfer_error = std::string(opened.status().message());
      return resp;
    }
    body = *std::move(opened);
  }
  CURL* curl = curl_easy_init();
  if (curl == nullptr) {
    BERTH_LOG(Error) << "curl_easy_init failed (out of memory)";
    std::abort();
  }
  Transfer t{&req, &resp};
  t.body = body.get();
  curl_slist* headers = nullptr;
  for (const std::string& header : req.headers) {
    headers = curl_slist_append(headers, header.c_str());
  }
  for (const std::string& header : config.headers) {
    headers = curl_slist_append(headers, header.c_str());
  }
  if (body != nullptr) {
    // No "Expect: 100-continue": curl would wait up to a second for an answer before each body
    // over 1 MiB (measured: about 1 s added to a push of three 5 MiB layers).
    headers = curl_slist_append(headers, "Expect:");
  }
  std::string auth_header = absl::StrCat("Authorization: ", authorization);
  if (!authorization.empty()) {
    headers = curl_slist_append(headers, auth_header.c_str());
  }
  curl_easy_setopt(curl, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, options_.user_agent.c_str());
  curl_easy_setopt(curl, CURLOPT_NOBODY, req.head ? 1L : 0L);
  if (body != nullptr) {
    // UPLOAD sends the body with a Content-Length; the method is then set by CUSTOMREQUEST.
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(req.body_size));
  }
  if (!req.method.empty()) {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req.method.c_str());
  }
  // Blob GETs may redirect to storage; curl drops our Authorization on another host.
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_2TLS);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(options_.connect_timeout)));
  // A transfer that stalls (under 1 byte/s for 30 s) counts as dropped.
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 30L);
  if (ctx.deadline != absl::InfiniteFuture()) {
    int64_t left = std::max<int64_t>(1, absl::ToInt64Milliseconds(ctx.deadline - absl::Now()));
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(left));
  }
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
  if (config.skip_verify) {
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
  } else if (!config.ca_pem.empty()) {
    // The host's CAs, and the system's beside them (OpenSSL reads both).
    curl_blob blob{const_cast<char*>(config.ca_pem.data()), config.ca_pem.size(),
                   CURL_BLOB_NOCOPY};
    curl_easy_setopt(curl, CURLOPT_CAINFO_BLOB, &blob);
    curl_easy_setopt(curl, CURLOPT_CAPATH, "/etc/ssl/certs");
  } else if (!config.ca_file.empty()) {
    curl_easy_setopt(curl, CURLOPT_CAINFO, config.ca_file.c_str());
    curl_easy_setopt(curl, CURLOPT_CAPATH, "/etc/ssl/certs");
  }
  if (!config.client_cert.empty()) {
    curl_easy_setopt(curl, CURLOPT_SSLCERT, config.client_cert.c_str());
    curl_easy_setopt(curl, CURLOPT_SSLKEY, config.client_key.c_str());
  }
  char error[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
  // The body and its handlers on this thread; the transfer on the engine's loop.
  CurlHandlers handlers;
  handlers.tls = absl::StartsWith(req.url, "https://");
  handlers.on_body = [&t](absl::string_view data) { return OnBody(&t, data); };
  if (body != nullptr) {
    handlers.read = [&t](char* buf, size_t size) -> absl::StatusOr<size_t> {
      absl::StatusOr<size_t> n = t.body->Read(buf, size);
      if (!n.ok()) {
        t.resp->write_status = n.status();
      }
      return n;
    };
    handlers.on_sent = req.on_sent;
  }
  resp.curl_code = engine_.Perform(ctx, curl, handlers);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &resp.code);
  resp.transfer_ok = resp.curl_code == CURLE_OK;
  if (resp.curl_code == CurlEngine::kStopped) {
    resp.transfer_error = "the registry client is shutting down";
  } else if (!resp.transfer_ok) {
    resp.transfer_error = error[0] != '\0' ? error : curl_easy_strerror(resp.curl_code);
  }
  if (options_.on_response) {
    options_.on_response(req.host, static_cast<int>(resp.code));
  }
  long connects = 0;
  if (options_.on_connection &&
      curl_easy_getinfo(curl, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK && connects > 0) {
    long version = 0;
    curl_easy_getinfo(curl, CURLINFO_HTTP_VERSION, &version);
    options_.on_connection(req.host, version == CURL_HTTP_VERSION_2_0   ? 2
                                     : version == CURL_HTTP_VERSION_3 ? 3
                                                                      : 1);
  }
  curl_easy_cleanup(curl);
  curl_slist_free_all(headers);
  return resp;
}

std::string RegistryHttp::Authorization(const HttpRequest& req) const {
  std::string token = tokens_.Lookup(req.host, req.scope, Now());
  if (!token.empty()) {
    return absl::StrCat("Bearer ", token);
  }
  absl::MutexLock lock(&mu_);
  if (basic_hosts_.count(req.host) != 0) {
    return BasicAuthorization(ConfigFor(req));
  }
  return std::string();
}

absl::Status RegistryHttp::Authenticate(const Context& ctx, const HttpRequest& req,
                                        const HttpResponse& challenge_resp) {
  const RegistryHostConfig& config = ConfigFor(req);
  const bool has_credentials = !config.username.empty() || !config.password.empty();
  absl::StatusOr<AuthChallenge> challenge =
      ParseAuthChallenge(challenge_resp.Header("www-authenticate"));
  if (!challenge.ok()) {
    return absl::UnauthenticatedError(absl::StrCat("registry ", req.host,
                                                   ": authentication required: ",
                                                   challenge.status().message()));
  }
  if (challenge->scheme == "basic") {
    if (!has_credentials) {
      return absl::UnauthenticatedError(
          absl::StrCat("registry ", req.host, ": requires credentials (Basic auth)"));
    }
    absl::MutexLock lock(&mu_);
    basic_hosts_.insert(req.host);
    return absl::OkStatus();
  }
  if (challenge->scheme != "bearer") {
    return absl::UnauthenticatedError(absl::StrCat(
        "registry ", req.host, ": unsupported auth scheme \"", challenge->scheme, "\""));
  }
  TokenRequest token_req;
  token_req.realm = challenge->params["realm"];
  token_req.service = challenge->params["service"];
  token_req.scope = challenge->params.count("scope") != 0 ? challenge->params["scope"] : req.scope;
  token_req.username = config.username;
  token_req.password = config.password;
  token_req.identity_token = config.identity_token;
  token_req.offline = static_cast<bool>(options_.on_refresh_token);
  absl::StatusOr<BearerToken> token = FetchBearerToken(
      req.host, token_req,
      [&](const TokenExchange& exchange) { return ExchangeToken(ctx, req, exchange); },
      [this] { return Now(); });
  BERTH_RETURN_IF_ERROR(token.status());
  if (!token->refresh_token.empty() && options_.on_refresh_token) {
    options_.on_refresh_token(req.host, token->refresh_token);
  }
  tokens_.Store(req.host, req.scope, *std::move(token));
  return absl::OkStatus();
}

TokenReply RegistryHttp::ExchangeToken(const Context& ctx, const HttpRequest& req,
                                       const TokenExchange& exchange) {
  HttpRequest token_req;
  token_req.host = req.host;
  token_req.config = req.config;
  token_req.max_body = 1 << 20;
  token_req.url = exchange.url;
  if (exchange.method == "POST") {
    token_req.method = "POST";
    token_req.headers = {"Content-Type: application/x-www-form-urlencoded; charset=utf-8"};
    token_req.body_size = static_cast<int64_t>(exchange.form.size());
    token_req.body = [&exchange]() -> absl::StatusOr<std::unique_ptr<ByteSource>> {
      return std::make_unique<StringSource>(exchange.form);
    };
  }
  HttpResponse resp = Perform(ctx, token_req, exchange.authorization, ConfigFor(req));
  return TokenReply{resp.transfer_ok, resp.transfer_error, resp.code, std::move(resp.body)};
}

absl::Status RegistryHttp::Backoff(const Context& ctx, int attempt) const {
  absl::Duration delay = options_.initial_backoff;
  for (int i = 1; i < attempt && delay < options_.max_backoff; ++i) {
    delay *= 2;
  }
  delay = std::min(delay, options_.max_backoff);
  absl::MutexLock lock(&mu_);
  // Wakes early when the client is destroyed.
  mu_.AwaitWithTimeout(absl::Condition(&stopping_), std::min(delay, ctx.deadline - absl::Now()));
  if (stopping_) {
    return absl::UnavailableError("the registry client is shutting down");
  }
  return ctx.Alive();
}

absl::StatusOr<HttpResponse> RegistryHttp::Do(const Context& ctx, HttpRequest req) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      return absl::UnavailableError("the registry client is shutting down");
    }
    ++calls_;
  }
  struct Leave {
    RegistryHttp* http;
    ~Leave() {
      absl::MutexLock lock(&http->mu_);
      --http->calls_;
    }
  } leave{this};
  const RegistryHostConfig& config = ConfigFor(req);
  bool authenticated = false;
  for (int attempt = 1;; ++attempt) {
    BERTH_RETURN_IF_ERROR(ctx.Alive());
    HttpResponse resp = Perform(ctx, req, Authorization(req), config);
    if (!resp.write_status.ok() || (resp.transfer_ok && resp.code == 401 && authenticated)) {
      return resp;
    }
    if (!resp.transfer_ok) {
      if (resp.curl_code == CurlEngine::kStopped) {
        return absl::UnavailableError(
            absl::StrCat("registry ", req.host, ": ", resp.transfer_error));
      }
      if (resp.curl_code == CURLE_ABORTED_BY_CALLBACK) {
        BERTH_RETURN_IF_ERROR(ctx.Alive());
      }
      if (IsTlsError(resp.curl_code)) {
        return absl::UnavailableError(
            absl::StrCat("registry ", req.host, ": TLS: ", resp.transfer_error));
      }
      if (resp.streamed > 0) {
        return resp;  // the caller resumes from what it received
      }
      if (attempt >= options_.max_attempts) {
        return absl::UnavailableError(absl::StrCat("registry ", req.host, ": ",
                                                   resp.transfer_error, " (after ", attempt,
                                                   " attempts)"));
      }
      BERTH_RETURN_IF_ERROR(Backoff(ctx, attempt));
      continue;
    }
    if (resp.code == 401) {
      tokens_.Forget(req.host, req.scope);
      BERTH_RETURN_IF_ERROR(Authenticate(ctx, req, resp));
      authenticated = true;
      --attempt;  // the challenge is not a failure
      continue;
    }
    if ((resp.code == 429 || resp.code >= 500) && attempt < options_.max_attempts) {
      BERTH_RETURN_IF_ERROR(Backoff(ctx, attempt));
      continue;
    }
    return resp;
  }
}

}  // namespace berth::images
