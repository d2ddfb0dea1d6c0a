#include "lib/images/registry_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "lib/base/logging.h"
#include "lib/base/status_macros.h"
#include "lib/images/hosts_config.h"
#include "lib/images/registry_auth.h"
#include "lib/images/registry_chunked.h"
#include "lib/images/registry_http.h"
#include "lib/images/registry_upload.h"

namespace berth::images {
namespace {

std::string Scope(const Reference& ref) { return absl::StrCat("repository:", ref.path, ":pull"); }

// Whether a failure at one endpoint sends a request on to the next: the endpoint could not
// serve it (unreachable, TLS, 5xx or 429 after the retries: Unavailable) or does not have it
// (NotFound: a mirror without the image). Auth errors, bad content and the caller's own
// cancellation or deadline stop there.
bool TryNext(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable ||
         status.code() == absl::StatusCode::kNotFound;
}
const absl::Status& StatusOf(const absl::Status& status) { return status; }
template <typename T>
absl::Status StatusOf(const absl::StatusOr<T>& result) {
  return result.status();
}

absl::StatusOr<std::unique_ptr<Digester>> DigesterFor(const Digest& digest) {
  return Digester::Create(digest.algorithm());
}

class CurlRegistryClient : public RegistryClient {
 public:
  explicit CurlRegistryClient(RegistryClientOptions options)
      : options_(options), http_(std::move(options)) {
    if (options_.blob_chunk_size > 0 && options_.blob_parallel_chunks > 1) {
      chunked_ = std::make_unique<ChunkedFetcher>(
          http_, options_.blob_chunk_size, options_.blob_parallel_chunks,
          options_.blob_chunk_memory > 0
              ? options_.blob_chunk_memory
              : options_.blob_chunk_size * options_.blob_parallel_chunks);
    }
  }

  absl::StatusOr<Descriptor> Resolve(const Context& ctx, const Reference& ref) override;
  absl::StatusOr<Document> FetchManifest(const Context& ctx, const Reference& ref,
                                         const Descriptor& desc) override;
  absl::Status FetchBlob(const Context& ctx, const Reference& ref, const oci::Descriptor& desc,
                         int64_t offset, Digester* prefix, const BlobCallback& sink) override;

  absl::StatusOr<bool> HasBlob(const Context& ctx, const Reference& ref,
                               const oci::Descriptor& desc) override {
    return HasBlobOver(http_, ctx, ref, desc);
  }
  absl::StatusOr<BlobPushResult> PushBlob(const Context& ctx, const Reference& ref,
                                          const oci::Descriptor& desc,
                                          const BlobUpload& upload) override {
    return PushBlobOver(http_, ctx, ref, desc, upload);
  }
  absl::Status PushManifest(const Context& ctx, const Reference& ref, const Descriptor& desc,
                            absl::string_view raw, absl::string_view object) override {
    return PushManifestOver(http_, ctx, ref, desc, raw, object);
  }
  absl::Status CheckLogin(const Context& ctx, absl::string_view host) override {
    return CheckLoginOver(http_, ctx, host);
  }
  absl::StatusOr<Descriptor> ResolveForPush(const Context& ctx, const Reference& ref) override {
    BERTH_ASSIGN_OR_RETURN(const RegistryEndpoint endpoint, PushEndpoint(options_, ref.domain));
    return ResolveAt(ctx, endpoint, ref);
  }

 private:
  HttpRequest ManifestRequest(const RegistryEndpoint& endpoint, const Reference& ref,
                              absl::string_view object, bool head) const {
    HttpRequest req;
    req.host = endpoint.host;
    req.config = &endpoint.config;
    req.scope = Scope(ref);
    req.url = absl::StrCat(endpoint.BaseUrl(), ref.path, "/manifests/", object);
    req.head = head;
    req.headers.push_back(absl::StrCat("Accept: ", ManifestAcceptHeader()));
    req.max_body = kMaxDocumentSize;
    return req;
  }

  // `fn` at each endpoint of ref's host that has the capability, in order, until one answers;
  // on to the next only when TryNext says so. The last endpoint's error otherwise.
  template <typename Fn>
  auto OverEndpoints(const Reference& ref, bool RegistryEndpoint::*capability,
                     absl::string_view capability_name, const Fn& fn) const
      -> decltype(fn(std::declval<const RegistryEndpoint&>())) {
    std::vector<RegistryEndpoint> endpoints = ResolveEndpoints(options_, ref.domain);
    endpoints.erase(std::remove_if(endpoints.begin(), endpoints.end(),
                                   [&](const RegistryEndpoint& e) { return !(e.*capability); }),
                    endpoints.end());
    if (endpoints.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "registry ", ref.domain, ": no host in its hosts.toml can ", capability_name));
    }
    for (size_t i = 0;; ++i) {
      auto result = fn(endpoints[i]);
      if (result.ok() || i + 1 == endpoints.size() || !TryNext(StatusOf(result))) {
        return result;
      }
      BERTH_LOG(Info) << "registry " << ref.domain << ": " << StatusOf(result) << "; trying "
                      << endpoints[i + 1].BaseUrl();
    }
  }

  absl::StatusOr<Descriptor> ResolveAt(const Context& ctx, const RegistryEndpoint& endpoint,
                                       const Reference& ref);
  absl::StatusOr<Document> FetchManifestAt(const Context& ctx, const RegistryEndpoint& endpoint,
                                           const Reference& ref, const Descriptor& desc);
  absl::Status FetchBlobAt(const Context& ctx, const RegistryEndpoint& endpoint,
                           const Reference& ref, const oci::Descriptor& desc, int64_t* pos,
                           Digester* digester, const BlobCallback& sink);

  const RegistryClientOptions options_;
  RegistryHttp http_;
  std::unique_ptr<ChunkedFetcher> chunked_;  // null: blobs are fetched with one GET
};

absl::StatusOr<Descriptor> CurlRegistryClient::Resolve(const Context& ctx, const Reference& ref) {
  return OverEndpoints(ref, &RegistryEndpoint::resolve, "resolve",
                       [&](const RegistryEndpoint& endpoint) {
                         return ResolveAt(ctx, endpoint, ref);
                       });
}

absl::StatusOr<Descriptor> CurlRegistryClient::ResolveAt(const Context& ctx,
                                                         const RegistryEndpoint& endpoint,
                                                         const Reference& ref) {
  const std::string object = ref.Object();
  const std::string what = absl::StrCat("manifest ", ref.path, ":", object);
  // HEAD first: the descriptor without the body. Registries that answer HEAD without a digest
  // (or not at all) get a GET, which also brings the registry's message for an unknown tag.
  BERTH_ASSIGN_OR_RETURN(HttpResponse head,
                         http_.Do(ctx, ManifestRequest(endpoint, ref, object, true)));
  if (head.code == 200) {
    absl::StatusOr<Digest> digest = Digest::Parse(head.Header("docker-content-digest"));
    int64_t size = 0;
    if (digest.ok() && absl::SimpleAtoi(head.Header("content-length"), &size) && size >= 0) {
      if (!ref.digest.IsEmpty() && *digest != ref.digest) {
        return absl::InvalidArgumentError(
            absl::StrCat("registry ", endpoint.host, ": ", what, ": served as ",
                         digest->ToString()));
      }
      Descriptor desc;
      desc.media_type = std::string(head.Header("content-type"));
      desc.digest = *digest;
      desc.size = size;
      return desc;
    }
  }
  BERTH_ASSIGN_OR_RETURN(HttpResponse get,
                         http_.Do(ctx, ManifestRequest(endpoint, ref, object, false)));
  if (get.code != 200) {
    return RegistryError(endpoint.host, what, get);
  }
  if (!get.write_status.ok()) {
    return get.write_status;
  }
  Digest want = ref.digest;
  absl::StatusOr<Digest> named = Digest::Parse(get.Header("docker-content-digest"));
  if (want.IsEmpty() && named.ok()) {
    want = *named;
  }
  BERTH_ASSIGN_OR_RETURN(std::unique_ptr<Digester> digester,
                         Digester::Create(want.IsEmpty() ? "sha256" : want.algorithm()));
  digester->Update(get.body);
  Digest got = digester->Sum();
  if ((!want.IsEmpty() && got != want) || (named.ok() && *named != got &&
                                           named->algorithm() == got.algorithm())) {
    return absl::InvalidArgumentError(
        absl::StrCat("registry ", endpoint.host, ": ", what, ": content is ", got.ToString(),
                     ", registry says ", named.ok() ? named->ToString() : want.ToString()));
  }
  Descriptor desc;
  desc.media_type = std::string(get.Header("content-type"));
  desc.digest = got;
  desc.size = static_cast<int64_t>(get.body.size());
  return desc;
}

absl::StatusOr<RegistryClient::Document> CurlRegistryClient::FetchManifest(
    const Context& ctx, const Reference& ref, const Descriptor& desc) {
  return OverEndpoints(ref, &RegistryEndpoint::pull, "pull",
                       [&](const RegistryEndpoint& endpoint) {
                         return FetchManifestAt(ctx, endpoint, ref, desc);
                       });
}

absl::StatusOr<RegistryClient::Document> CurlRegistryClient::FetchManifestAt(
    const Context& ctx, const RegistryEndpoint& endpoint, const Reference& ref,
    const Descriptor& desc) {
  const std::string what = absl::StrCat("manifest ", ref.path, "@", desc.digest.ToString());
  if (desc.size > kMaxDocumentSize) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", desc.size,
                                                   " bytes, over the 4 MiB limit"));
  }
  HttpRequest req = ManifestRequest(endpoint, ref, desc.digest.ToString(), false);
  req.max_body = desc.size;
  BERTH_ASSIGN_OR_RETURN(HttpResponse resp, http_.Do(ctx, std::move(req)));
  if (resp.code != 200) {
    return RegistryError(endpoint.host, what, resp);
  }
  if (!resp.write_status.ok()) {
    return resp.write_status;
  }
  BERTH_ASSIGN_OR_RETURN(std::unique_ptr<Digester> digester, DigesterFor(desc.digest));
  digester->Update(resp.body);
  if (digester->Sum() != desc.digest || static_cast<int64_t>(resp.body.size()) != desc.size) {
    return absl::InvalidArgumentError(
        absl::StrCat("registry ", endpoint.host, ": ", what, ": content is ",
                     digester->Sum().ToString(), " (", resp.body.size(), " bytes), expected ",
                     desc.size, " bytes"));
  }
  Document doc;
  doc.media_type =
      desc.media_type.empty() ? std::string(resp.Header("content-type")) : desc.media_type;
  if (IsIndexType(doc.media_type)) {
    BERTH_ASSIGN_OR_RETURN(Index index, ParseIndex(resp.body, doc.media_type));
    doc.index = std::move(index);
  } else if (IsManifestType(doc.media_type)) {
    BERTH_ASSIGN_OR_RETURN(Manifest manifest, ParseManifest(resp.body, doc.media_type));
    doc.manifest = std::move(manifest);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("registry ", endpoint.host, ": ", what, ": unsupported media type \"",
                     doc.media_type, "\""));
  }
  doc.raw = std::move(resp.body);
  return doc;
}

absl::Status CurlRegistryClient::FetchBlob(const Context& ctx, const Reference& ref,
                                           const oci::Descriptor& desc, int64_t offset,
                                           Digester* prefix, const BlobCallback& sink) {
  const std::string what = absl::StrCat("blob ", ref.path, "@", desc.digest.ToString());
  if (offset < 0 || offset > desc.size) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": offset ", offset, " outside its ", desc.size, " bytes"));
  }
  std::unique_ptr<Digester> own;
  Digester* digester = prefix;
  if (offset == 0) {
    BERTH_ASSIGN_OR_RETURN(own, DigesterFor(desc.digest));
    digester = own.get();
  }
  int64_t pos = offset;
  BERTH_RETURN_IF_ERROR(OverEndpoints(ref, &RegistryEndpoint::pull, "pull",
                                      [&](const RegistryEndpoint& endpoint) {
                                        return FetchBlobAt(ctx, endpoint, ref, desc, &pos,
                                                           digester, sink);
                                      }));
  if (pos != desc.size) {
    return absl::InvalidArgumentError(absl::StrCat("registry ", ref.domain, ": ", what, ": got ",
                                                   pos, " of ", desc.size, " bytes"));
  }
  if (digester != nullptr && digester->Sum() != desc.digest) {
    return absl::InvalidArgumentError(absl::StrCat("registry ", ref.domain, ": ", what,
                                                   ": content is ", digester->Sum().ToString()));
  }
  return absl::OkStatus();
}


// One endpoint's part of FetchBlob: from *pos on, resumed with Range when the connection
// drops; *pos advances with every byte handed to `sink`, so the next endpoint goes on from there.
absl::Status CurlRegistryClient::FetchBlobAt(const Context& ctx, const RegistryEndpoint& endpoint,
                                             const Reference& ref, const oci::Descriptor& desc,
                                             int64_t* pos_ptr, Digester* digester,
                                             const BlobCallback& sink) {
  const std::string what = absl::StrCat("blob ", ref.path, "@", desc.digest.ToString());
  int64_t& pos = *pos_ptr;
  HttpRequest base;
  base.host = endpoint.host;
  base.config = &endpoint.config;
  base.scope = Scope(ref);
  base.url = absl::StrCat(endpoint.BaseUrl(), ref.path, "/blobs/", desc.digest.ToString());
  if (chunked_ != nullptr && chunked_->Wants(desc.size - pos)) {
    // Parallel Range chunks, in order into the digester and the sink; a registry that ignores
    // Range gets the plain way below, from where the chunked fetch stopped.
    BERTH_ASSIGN_OR_RETURN(
        ChunkedFetcher::Outcome outcome,
        chunked_->Fetch(ctx, base, desc.size, what, &pos, [&](absl::string_view data) {
          if (digester != nullptr) {
            digester->Update(data);
          }
          return sink(data);
        }));
    if (outcome == ChunkedFetcher::Outcome::kDone) {
      return absl::OkStatus();
    }
  }
  for (int attempt = 1; pos < desc.size || (pos == 0 && desc.size == 0); ++attempt) {
    int64_t skip = 0;  // bytes of a 200 (Range ignored) that we already have
    HttpRequest req = base;
    if (pos > 0) {
      req.headers.push_back(absl::StrCat("Range: bytes=", pos, "-"));
    }
    req.on_start = [&](const HttpResponse& resp) -> absl::Status {
      int64_t length = -1;
      bool has_length = absl::SimpleAtoi(resp.Header("content-length"), &length);
      if (resp.code == 206) {
        int64_t start = -1;
        absl::string_view range = resp.Header("content-range");
        absl::ConsumePrefix(&range, "bytes ");
        if (!absl::SimpleAtoi(range.substr(0, range.find('-')), &start) || start != pos) {
          return absl::InvalidArgumentError(
              absl::StrCat(what, ": asked for bytes from ", pos, ", got \"", range, "\""));
        }
      } else {
        skip = pos;
      }
      if (has_length && length - skip > desc.size - pos) {
        return absl::InvalidArgumentError(absl::StrCat(
            "registry ", endpoint.host, ": ", what, ": ", length - skip + pos,
            " bytes is larger than the descriptor's ", desc.size));
      }
      return absl::OkStatus();
    };
    req.on_data = [&](absl::string_view data) -> absl::Status {
      if (skip > 0) {
        size_t n = static_cast<size_t>(std::min<int64_t>(skip, data.size()));
        data.remove_prefix(n);
        skip -= static_cast<int64_t>(n);
      }
      if (pos + static_cast<int64_t>(data.size()) > desc.size) {
        return absl::InvalidArgumentError(
            absl::StrCat("registry ", endpoint.host, ": ", what,
                         ": larger than the descriptor's ", desc.size, " bytes"));
      }
      if (data.empty()) {
        return absl::OkStatus();
      }
      if (digester != nullptr) {
        digester->Update(data);
      }
      pos += static_cast<int64_t>(data.size());
      return sink(data);
    };
    BERTH_ASSIGN_OR_RETURN(HttpResponse resp, http_.Do(ctx, std::move(req)));
    if (resp.code != 200 && resp.code != 206) {
      return RegistryError(endpoint.host, what, resp);
    }
    if (!resp.write_status.ok()) {
      return resp.write_status;
    }
    if (resp.transfer_ok || desc.size == 0) {
      return absl::OkStatus();
    }
    // Dropped mid-blob: resume from what arrived.
    if (attempt >= http_.max_attempts()) {
      return absl::UnavailableError(absl::StrCat("registry ", endpoint.host, ": ", what,
                                                 ": connection dropped at byte ", pos, " (",
                                                 resp.transfer_error, ")"));
    }
    BERTH_RETURN_IF_ERROR(http_.Backoff(ctx, attempt));
  }
  return absl::OkStatus();
}

}  // namespace

std::string RegistryEndpoint::BaseUrl() const {
  return absl::StrCat(scheme, "://", host == kDockerHubDomain ? "registry-1.docker.io" : host,
                      path, "/");
}

std::vector<RegistryEndpoint> ResolveEndpoints(const RegistryClientOptions& options,
                                               absl::string_view host) {
  std::vector<RegistryEndpoint> endpoints(1);
  for (const std::string& name : HostDirNames(host)) {
    auto dir = options.host_dirs.find(name);
    if (dir != options.host_dirs.end() && !dir->second.empty()) {
      endpoints = dir->second;
      break;
    }
  }
  for (RegistryEndpoint& endpoint : endpoints) {
    const bool itself = endpoint.host.empty();
    if (itself) {
      endpoint.host = std::string(host);
    }
    auto own = options.hosts.find(endpoint.host);
    RegistryHostConfig config = own != options.hosts.end() ? own->second : RegistryHostConfig();
    if (itself && endpoint.scheme == "https" && config.plain_http && host != kDockerHubDomain) {
      endpoint.scheme = "http";
    }
    config.plain_http = endpoint.scheme == "http";
    const RegistryHostConfig& file = endpoint.config;
    config.skip_verify = config.skip_verify || file.skip_verify;
    if (!file.ca_pem.empty()) {
      config.ca_pem = file.ca_pem;
    }
    if (!file.client_cert.empty()) {
      config.client_cert = file.client_cert;
      config.client_key = file.client_key;
    }
    config.headers.insert(config.headers.end(), file.headers.begin(), file.headers.end());
    endpoint.config = std::move(config);
  }
  return endpoints;
}

std::string ManifestAcceptHeader() {
  return absl::StrJoin({kOciIndex, kOciManifest, kDockerManifestList, kDockerManifest}, ", ");
}

std::unique_ptr<RegistryClient> RegistryClient::Create(RegistryClientOptions options) {
  return std::make_unique<CurlRegistryClient>(std::move(options));
}

}  // namespace berth::images
