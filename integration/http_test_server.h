#pragma once

// A tiny HTTP/1.1 server for tests: a thread serving 127.0.0.1:<port 0>, one request per
// connection, answered by a handler with the raw bytes to send (status line, headers, body);
// the connection is then closed, so a handler can also send a truncated body (a dropped
// connection) or more bytes than it announced. It stands in for a token server and for a
// misbehaving registry. A request body is read when Content-Length announces one (up to 1 MiB:
// a token server's POSTed form), not when chunked.

#include <atomic>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "lib/base/unique_fd.h"

namespace berth::integration {

struct HttpTestRequest {
  std::string method;
  std::string path;   // without the query
  std::string query;  // after '?', raw
  std::map<std::string, std::string> headers;  // names lowercased
  std::string body;
  // The values of `name` in the query, decoded (a name may repeat, as "scope" does).
  std::vector<std::string> QueryValues(const std::string& name) const;
  // The first value of `name` in an application/x-www-form-urlencoded body, decoded; empty
  // when absent.
  std::string FormValue(const std::string& name) const;
};

class HttpTestServer {
 public:
  using Handler = std::function<std::string(const HttpTestRequest&)>;
  // Starts serving at once; CHECK-fails (aborts) when it cannot listen. `concurrent`: each
  // connection is served on its own thread (a handler may block one request while others
  // are answered); the handler must then be thread-safe.
  explicit HttpTestServer(Handler handler, bool concurrent = false);
  ~HttpTestServer();  // stops the thread and closes the socket
  HttpTestServer(const HttpTestServer&) = delete;
  HttpTestServer& operator=(const HttpTestServer&) = delete;

  int port() const { return port_; }
  std::string url() const;  // "http://127.0.0.1:<port>"
  // Every request served so far, in order.
  std::vector<HttpTestRequest> requests() const;

 private:
  void Serve();
  void ServeOne(int fd);

  Handler handler_;
  const bool concurrent_;
  std::vector<std::thread> connections_;  // concurrent: one per connection, joined at the end
  UniqueFd listen_fd_;
  UniqueFd stop_read_;
  UniqueFd stop_write_;
  int port_ = 0;
  mutable absl::Mutex mu_;
  std::vector<HttpTestRequest> requests_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// "HTTP/1.1 <code> X\r\n" + headers + Content-Length (of `body` unless `content_length` >= 0)
// + "Connection: close\r\n\r\n" + body.
std::string HttpText(int code, const std::vector<std::string>& headers, const std::string& body,
                     int64_t content_length = -1);

// A JWT (RS256) for docker-registry's token auth, signed with the PEM key at `key_path` and
// carrying the PEM certificate at `cert_path` in its x5c header, so a registry whose
// rootcertbundle holds that certificate accepts it. `access` is the claims' access list, e.g.
// {{"repository:test/hello", {"pull", "push"}}} with the type before the first ':'.
absl::StatusOr<std::string> SignRegistryToken(
    const std::string& key_path, const std::string& cert_path, const std::string& issuer,
    const std::string& audience,
    const std::vector<std::pair<std::string, std::vector<std::string>>>& access);

}  // namespace berth::integration
