#include "integration/http_test_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace berth::integration {
namespace {

void Die(const char* what) {
  std::perror(what);
  std::abort();
}

std::string PercentDecode(absl::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size()) {
      out.push_back(static_cast<char>(std::stoi(std::string(text.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else if (text[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

void WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) {
      return;  // the client went away
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
}

}  // namespace

namespace {

// The values of `name` in "a=1&b=2" (a query, or a form body), decoded.
std::vector<std::string> Values(absl::string_view encoded, const std::string& name) {
  std::vector<std::string> values;
  for (absl::string_view pair : absl::StrSplit(encoded, '&', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(pair, absl::MaxSplits('=', 1));
    if (PercentDecode(kv.first) == name) {
      values.push_back(PercentDecode(kv.second));
    }
  }
  return values;
}

}  // namespace

std::vector<std::string> HttpTestRequest::QueryValues(const std::string& name) const {
  return Values(query, name);
}

std::string HttpTestRequest::FormValue(const std::string& name) const {
  std::vector<std::string> values = Values(body, name);
  return values.empty() ? std::string() : values.front();
}

HttpTestServer::HttpTestServer(Handler handler, bool concurrent)
    : handler_(std::move(handler)), concurrent_(concurrent) {
  listen_fd_ = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (listen_fd_.get() < 0) {
    Die("socket");
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (::bind(listen_fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(listen_fd_.get(), 64) != 0 ||
      ::getsockname(listen_fd_.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    Die("bind/listen");
  }
  port_ = ntohs(addr.sin_port);
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    Die("pipe2");
  }
  stop_read_ = UniqueFd(pipe_fds[0]);
  stop_write_ = UniqueFd(pipe_fds[1]);
  thread_ = std::thread([this] { Serve(); });
}

HttpTestServer::~HttpTestServer() {
  char byte = 'x';
  (void)!::write(stop_write_.get(), &byte, 1);
  thread_.join();
  for (std::thread& connection : connections_) {
    connection.join();
  }
}

std::string HttpTestServer::url() const { return absl::StrCat("http://127.0.0.1:", port_); }

std::vector<HttpTestRequest> HttpTestServer::requests() const {
  absl::MutexLock lock(&mu_);
  return requests_;
}

void HttpTestServer::Serve() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_.get(), POLLIN, 0}, {stop_read_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      continue;
    }
    if (fds[1].revents != 0) {
      return;
    }
    UniqueFd conn(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (conn.get() < 0) {
      continue;
    }
    if (concurrent_) {
      connections_.emplace_back(
          [this, fd = std::make_shared<UniqueFd>(std::move(conn))] { ServeOne(fd->get()); });
    } else {
      ServeOne(conn.get());
    }
  }
}

void HttpTestServer::ServeOne(int fd) {
  std::string head;
  char buf[4096];
  while (head.find("\r\n\r\n") == std::string::npos) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) {
      return;
    }
    head.append(buf, static_cast<size_t>(n));
  }
  std::string rest = head.substr(head.find("\r\n\r\n") + 4);
  head.resize(head.find("\r\n\r\n"));
  std::vector<std::string> lines = absl::StrSplit(head, "\r\n");
  std::vector<std::string> first = absl::StrSplit(lines[0], ' ');
  if (first.size() < 2) {
    return;
  }
  HttpTestRequest req;
  req.method = first[0];
  std::pair<std::string, std::string> target = absl::StrSplit(first[1], absl::MaxSplits('?', 1));
  req.path = target.first;
  req.query = target.second;
  for (size_t i = 1; i < lines.size(); ++i) {
    size_t colon = lines[i].find(':');
    if (colon != std::string::npos) {
      req.headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
          std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
    }
  }
  size_t length = 0;
  if (auto it = req.headers.find("content-length");
      it != req.headers.end() && absl::SimpleAtoi(it->second, &length) && length <= (1 << 20)) {
    while (rest.size() < length) {
      ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) {
        return;
      }
      rest.append(buf, static_cast<size_t>(n));
    }
    req.body = rest.substr(0, length);
  }
  {
    absl::MutexLock lock(&mu_);
    requests_.push_back(req);
  }
  std::string response = handler_(req);
  if (req.method == "HEAD") {
    size_t end = response.find("\r\n\r\n");
    if (end != std::string::npos) {
      response.resize(end + 4);
    }
  }
  WriteAll(fd, response);
}

std::string HttpText(int code, const std::vector<std::string>& headers, const std::string& body,
                     int64_t content_length) {
  std::string text = absl::StrCat("HTTP/1.1 ", code, " X\r\n");
  for (const std::string& header : headers) {
    absl::StrAppend(&text, header, "\r\n");
  }
  absl::StrAppend(&text, "Content-Length: ",
                  content_length >= 0 ? content_length : static_cast<int64_t>(body.size()),
                  "\r\nConnection: close\r\n\r\n", body);
  return text;
}

absl::StatusOr<std::string> SignRegistryToken(
    const std::string& key_path, const std::string& cert_path, const std::string& issuer,
    const std::string& audience,
    const std::vector<std::pair<std::string, std::vector<std::string>>>& access) {
  std::unique_ptr<FILE, int (*)(FILE*)> key_file(std::fopen(key_path.c_str(), "r"), std::fclose);
  std::unique_ptr<FILE, int (*)(FILE*)> cert_file(std::fopen(cert_path.c_str(), "r"),
                                                  std::fclose);
  if (!key_file || !cert_file) {
    return absl::NotFoundError("token key or certificate missing");
  }
  std::unique_ptr<EVP_PKEY, void (*)(EVP_PKEY*)> key(
      PEM_read_PrivateKey(key_file.get(), nullptr, nullptr, nullptr), EVP_PKEY_free);
  std::unique_ptr<X509, void (*)(X509*)> cert(
      PEM_read_X509(cert_file.get(), nullptr, nullptr, nullptr), X509_free);
  if (!key || !cert) {
    return absl::InvalidArgumentError("cannot read the token key or certificate");
  }
  unsigned char* der = nullptr;
  int der_len = i2d_X509(cert.get(), &der);
  std::string cert_der(reinterpret_cast<char*>(der), static_cast<size_t>(der_len));
  OPENSSL_free(der);

  nlohmann::json header = {{"alg", "RS256"}, {"typ", "JWT"},
                           {"x5c", {absl::Base64Escape(cert_der)}}};
  nlohmann::json claims_access = nlohmann::json::array();
  for (const auto& [resource, actions] : access) {
    std::pair<std::string, std::string> type_name =
        absl::StrSplit(resource, absl::MaxSplits(':', 1));
    claims_access.push_back(
        {{"type", type_name.first}, {"name", type_name.second}, {"actions", actions}});
  }
  int64_t now = absl::ToUnixSeconds(absl::Now());
  nlohmann::json claims = {{"iss", issuer},      {"sub", "berth-test"},
                           {"aud", audience},    {"exp", now + 300},
                           {"nbf", now - 60},    {"iat", now},
                           {"jti", absl::StrCat("t", now, "-", std::rand())},
                           {"access", claims_access}};
  std::string signing_input = absl::StrCat(absl::WebSafeBase64Escape(header.dump()), ".",
                                           absl::WebSafeBase64Escape(claims.dump()));
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> md(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  size_t sig_len = 0;
  if (EVP_DigestSignInit(md.get(), nullptr, EVP_sha256(), nullptr, key.get()) != 1 ||
      EVP_DigestSign(md.get(), nullptr, &sig_len,
                     reinterpret_cast<const unsigned char*>(signing_input.data()),
                     signing_input.size()) != 1) {
    return absl::InternalError("EVP_DigestSign failed");
  }
  std::string sig(sig_len, '\0');
  if (EVP_DigestSign(md.get(), reinterpret_cast<unsigned char*>(sig.data()), &sig_len,
                     reinterpret_cast<const unsigned char*>(signing_input.data()),
                     signing_input.size()) != 1) {
    return absl::InternalError("EVP_DigestSign failed");
  }
  sig.resize(sig_len);
  return absl::StrCat(signing_input, ".", absl::WebSafeBase64Escape(sig));
}

}  // namespace berth::integration
