#include "lib/images/registry_upload.h"

#include <curl/curl.h>

#include <algorithm>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "lib/base/status_macros.h"

namespace berth::images {
namespace {

// The first `limit` bytes of another source (one chunk of a chunked upload).
class LimitedSource : public ByteSource {
 public:
  LimitedSource(std::unique_ptr<ByteSource> source, int64_t limit)
      : source_(std::move(source)), left_(limit) {}
  absl::StatusOr<size_t> Read(char* buf, size_t size) override {
    if (left_ <= 0) {
      return 0;
    }
    BERTH_ASSIGN_OR_RETURN(
        size_t n, source_->Read(buf, static_cast<size_t>(std::min<int64_t>(left_, size))));
    left_ -= static_cast<int64_t>(n);
    return n;
  }

 private:
  std::unique_ptr<ByteSource> source_;
  int64_t left_;
};

std::string Escape(absl::string_view text) {
  char* escaped = curl_easy_escape(nullptr, text.data(), static_cast<int>(text.size()));
  std::string result(escaped);
  curl_free(escaped);
  return result;
}

// A request to `endpoint` (its host's credentials and tokens, its TLS settings and headers);
// the endpoint must outlive the request.
HttpRequest Request(const RegistryEndpoint& endpoint, std::string scope, std::string url,
                    absl::string_view method) {
  HttpRequest req;
  req.host = endpoint.host;
  req.config = &endpoint.config;
  req.scope = std::move(scope);
  req.url = std::move(url);
  req.method = std::string(method);
  req.max_body = 64 << 10;
  return req;
}

void SetBody(HttpRequest* req, std::string data) {
  req->body_size = static_cast<int64_t>(data.size());
  req->body = [data = std::move(data)]() -> absl::StatusOr<std::unique_ptr<ByteSource>> {
    return std::make_unique<StringSource>(data);
  };
}

// The upload URL a 202 names: Location, made absolute against the endpoint's origin (the
// spec allows a path).
absl::StatusOr<std::string> UploadLocation(const RegistryEndpoint& endpoint,
                                           absl::string_view what, const HttpResponse& resp) {
  absl::string_view location = resp.Header("location");
  if (location.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("registry ", endpoint.host, ": ", what,
                                                   ": upload answered without a Location"));
  }
  if (absl::StartsWith(location, "http://") || absl::StartsWith(location, "https://")) {
    return std::string(location);
  }
  // "<scheme>://<host>" of the base URL (which names docker.io's API host).
  const std::string base = endpoint.BaseUrl();
  const size_t host_start = base.find("://") + 3;
  const std::string origin = base.substr(0, base.find('/', host_start));
  return absl::StrCat(origin, absl::StartsWith(location, "/") ? "" : "/", location);
}

absl::Status CheckDigestHeader(absl::string_view host, absl::string_view what,
                               const HttpResponse& resp, const Digest& want) {
  absl::string_view named = resp.Header("docker-content-digest");
  if (!named.empty() && named != want.ToString()) {
    return absl::InvalidArgumentError(absl::StrCat("registry ", host, ": ", what,
                                                   ": stored as ", named, ", sent ",
                                                   want.ToString()));
  }
  return absl::OkStatus();
}

}  // namespace

std::string PushScope(absl::string_view path) {
  return absl::StrCat("repository:", path, ":pull,push");
}

absl::StatusOr<RegistryEndpoint> PushEndpoint(const RegistryClientOptions& options,
                                              absl::string_view host) {
  for (RegistryEndpoint& endpoint : ResolveEndpoints(options, host)) {
    if (endpoint.push) {
      return std::move(endpoint);
    }
  }
  return absl::FailedPreconditionError(
      absl::StrCat("registry ", host, ": no host in its hosts.toml can push"));
}

absl::StatusOr<bool> HasBlobOver(RegistryHttp& http, const Context& ctx, const Reference& ref,
                                 const oci::Descriptor& desc) {
  BERTH_ASSIGN_OR_RETURN(const RegistryEndpoint endpoint,
                         PushEndpoint(http.options(), ref.domain));
  HttpRequest req = Request(
      endpoint, PushScope(ref.path),
      absl::StrCat(endpoint.BaseUrl(), ref.path, "/blobs/", desc.digest.ToString()), "");
  req.head = true;
  BERTH_ASSIGN_OR_RETURN(HttpResponse resp, http.Do(ctx, std::move(req)));
  if (resp.code == 200) {
    return true;
  }
  if (resp.code == 404) {
    return false;
  }
  return RegistryError(endpoint.host,
                       absl::StrCat("blob ", ref.path, "@", desc.digest.ToString()), resp);
}

absl::StatusOr<BlobPushResult> PushBlobOver(RegistryHttp& http, const Context& ctx,
                                            const Reference& ref, const oci::Descriptor& desc,
                                            const BlobUpload& upload) {
  BERTH_ASSIGN_OR_RETURN(const RegistryEndpoint endpoint,
                         PushEndpoint(http.options(), ref.domain));
  const std::string& host = endpoint.host;
  const std::string what = absl::StrCat("blob ", ref.path, "@", desc.digest.ToString());
  const std::string digest = Escape(desc.digest.ToString());
  std::string scope = PushScope(ref.path);
  std::string url = absl::StrCat(endpoint.BaseUrl(), ref.path, "/blobs/uploads/");
  const bool mount = !upload.mount_from.empty() && upload.mount_from != ref.path;
  if (mount) {
    absl::StrAppend(&scope, " repository:", upload.mount_from, ":pull");
    absl::StrAppend(&url, "?mount=", digest, "&from=", Escape(upload.mount_from));
  }
  HttpRequest start = Request(endpoint, scope, url, "POST");
  SetBody(&start, "");
  BERTH_ASSIGN_OR_RETURN(HttpResponse started, http.Do(ctx, std::move(start)));
  if (mount && started.code == 201) {
    BERTH_RETURN_IF_ERROR(CheckDigestHeader(host, what, started, desc.digest));
    return BlobPushResult::kMounted;
  }
  if (started.code != 202) {
    return RegistryError(host, absl::StrCat(what, ": starting the upload"), started);
  }
  BERTH_ASSIGN_OR_RETURN(std::string location,
                         UploadLocation(endpoint, what, started));

  const RegistryClientOptions& options = http.options();
  const bool chunked = desc.size > options.chunked_upload_threshold;
  const int64_t chunk = chunked ? std::max<int64_t>(1, options.upload_chunk_size) : desc.size;
  int64_t offset = 0;
  // Chunked: PATCHes of `chunk` bytes, each at the Location the previous answer named.
  while (chunked && offset < desc.size) {
    const int64_t n = std::min(chunk, desc.size - offset);
    HttpRequest patch = Request(endpoint, scope, location, "PATCH");
    patch.headers = {"Content-Type: application/octet-stream",
                     absl::StrCat("Content-Range: ", offset, "-", offset + n - 1)};
    patch.body_size = n;
    patch.body = [&upload, offset, n]() -> absl::StatusOr<std::unique_ptr<ByteSource>> {
      BERTH_ASSIGN_OR_RETURN(std::unique_ptr<ByteSource> source, upload.open(offset));
      return std::make_unique<LimitedSource>(std::move(source), n);
    };
    if (upload.progress) {
      patch.on_sent = [&upload, offset](int64_t sent) { upload.progress(offset + sent); };
    }
    BERTH_ASSIGN_OR_RETURN(HttpResponse resp, http.Do(ctx, std::move(patch)));
    if (resp.code != 202) {
      return RegistryError(host, absl::StrCat(what, ": chunk at ", offset), resp);
    }
    BERTH_ASSIGN_OR_RETURN(location, UploadLocation(endpoint, what, resp));
    offset += n;
  }
  // The closing PUT: the whole blob (monolithic) or nothing more (chunked), with the digest.
  HttpRequest put = Request(
      endpoint, scope,
      absl::StrCat(location, absl::StrContains(location, '?') ? "&" : "?", "digest=", digest),
      "PUT");
  put.headers = {"Content-Type: application/octet-stream"};
  if (chunked) {
    SetBody(&put, "");
  } else {
    put.body_size = desc.size;
    put.body = [&upload] { return upload.open(0); };
    put.on_sent = upload.progress;
  }
  BERTH_ASSIGN_OR_RETURN(HttpResponse done, http.Do(ctx, std::move(put)));
  if (!done.write_status.ok()) {
    return done.write_status;
  }
  if (done.code != 201) {
    return RegistryError(host, absl::StrCat(what, ": completing the upload"), done);
  }
  BERTH_RETURN_IF_ERROR(CheckDigestHeader(host, what, done, desc.digest));
  return BlobPushResult::kUploaded;
}

absl::Status PushManifestOver(RegistryHttp& http, const Context& ctx, const Reference& ref,
                              const Descriptor& desc, absl::string_view raw,
                              absl::string_view object) {
  const std::string what = absl::StrCat("manifest ", ref.path, ":", object);
  if (static_cast<int64_t>(raw.size()) != desc.size) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", raw.size(),
                                                   " bytes, its descriptor says ", desc.size));
  }
  BERTH_ASSIGN_OR_RETURN(const RegistryEndpoint endpoint,
                         PushEndpoint(http.options(), ref.domain));
  HttpRequest put = Request(endpoint, PushScope(ref.path),
                            absl::StrCat(endpoint.BaseUrl(), ref.path, "/manifests/", object),
                            "PUT");
  put.headers = {absl::StrCat("Content-Type: ", desc.media_type)};
  SetBody(&put, std::string(raw));
  BERTH_ASSIGN_OR_RETURN(HttpResponse resp, http.Do(ctx, std::move(put)));
  if (resp.code != 201 && resp.code != 200) {
    return RegistryError(endpoint.host, what, resp);
  }
  return CheckDigestHeader(endpoint.host, what, resp, desc.digest);
}

absl::Status CheckLoginOver(RegistryHttp& http, const Context& ctx, absl::string_view host) {
  BERTH_ASSIGN_OR_RETURN(const RegistryEndpoint endpoint, PushEndpoint(http.options(), host));
  HttpRequest req = Request(endpoint, "", endpoint.BaseUrl(), "");
  BERTH_ASSIGN_OR_RETURN(HttpResponse resp, http.Do(ctx, std::move(req)));
  if (resp.code == 200) {
    return absl::OkStatus();
  }
  return RegistryError(endpoint.host, "login", resp);
}

}  // namespace berth::images
