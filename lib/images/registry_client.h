#pragma once

// A registry client after the OCI distribution spec (v1.1) and docker's token auth. Read side:
// resolve a reference to a descriptor, fetch manifests and indexes, stream blobs. Write side:
// check for a blob, mount it from another repository, upload it (monolithic or chunked), put
// manifests and indexes by tag or digest.
//
// Terms: a registry `host` is a Reference's domain ("127.0.0.1:5000", "ghcr.io"; docker.io is
// reached at registry-1.docker.io). A `scope` is "repository:<path>:pull" for reads and
// "repository:<path>:pull,push" for writes (plus "repository:<from>:pull" for a mount).
//
// What it promises:
// - Resolve negotiates the manifest type (Accept: OCI index, OCI manifest, Docker list, Docker
//   manifest), asks with HEAD first and falls back to GET; a digest the registry names
//   (Docker-Content-Digest) must agree with the reference's digest and, when the bytes were
//   read, with the bytes.
// - FetchManifest refuses a document over 4 MiB (kMaxDocumentSize) or over its descriptor's
//   size before reading further, checks the bytes against the descriptor's digest, and
//   validates them with ParseIndex / ParseManifest (lib/images/oci.h).
// - FetchBlob streams into a callback and checks, while streaming, that the registry sends no
//   more than the descriptor's size (the transfer is cut at the first byte too many); at the end
//   that the size and the digest match. A connection dropped mid-blob is resumed with Range.
//   With blob_chunk_size set, a large blob is fetched as parallel Range chunks when the
//   registry honours Range; the sink still sees the bytes in order, and the digest covers them.
// - Requests answered 429 or 5xx, and connections that fail or drop, are retried with
//   exponential backoff, at most `max_attempts` times in all.
// - Auth: anonymous; Basic when the registry challenges with it and the host has credentials;
//   Bearer tokens fetched from the challenge's realm (anonymously or with the host's
//   credentials) and cached per (host, scope) until they expire.
//
// - PushBlob tries a cross-repository mount first when it is given a repository to mount from
//   (POST ?mount=&from=); a registry that answers 202 instead opened an upload, which is then
//   used. A blob up to `chunked_upload_threshold` bytes is sent in one PUT; a larger one in
//   PATCHes of `upload_chunk_size` bytes (Content-Range), then a PUT with the digest. The
//   registry's Docker-Content-Digest, when it sends one, must be the blob's.
// - PushManifest PUTs the document with its media type as Content-Type, by tag or by digest.
//
// Errors: NotFound carrying the registry's message (unknown tag, manifest or blob);
// Unauthenticated (no or wrong credentials) and PermissionDenied (credentials without access),
// naming the registry; InvalidArgument for a digest or size mismatch, an oversized or invalid
// document; Unavailable for a registry that cannot be reached, fails TLS verification, or keeps
// answering 5xx/429; the Context's Cancelled / DeadlineExceeded when the caller stops waiting.
//
// Thread-safe: calls may run concurrently. Every request is an easy handle on one libcurl multi
// handle per client, driven by one loop thread (lib/images/curl_engine.h), so all requests share
// its connections: reused over HTTP/1.1, and concurrent requests to an HTTP/2 registry
// multiplexed as streams of one connection. The calling thread waits for its request and runs
// its callbacks (sinks, upload sources), never the loop: a slow sink stalls only its own blob.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lib/base/byte_stream.h"
#include "lib/base/context.h"
#include "lib/base/digest.h"
#include "lib/images/oci.h"
#include "lib/images/reference.h"

namespace berth::images {

// How to reach one registry host (or one endpoint of it, from containerd's hosts.toml).
struct RegistryHostConfig {
  bool plain_http = false;   // http:// instead of https://
  bool skip_verify = false;  // TLS without checking the server's certificate or name
  std::string ca_file;       // PEM CA(s) trusted for this host, besides the system's
  std::string ca_pem;        // the same, in memory (hosts.toml `ca`, docker's *.crt), besides
  std::string client_cert;   // PEM client certificate and key, both or neither
  std::string client_key;
  std::string username;      // credentials for Basic auth and for the token server
  std::string password;
  std::string identity_token;  // an OAuth2 refresh token for the token server (wins)
  std::vector<std::string> headers;  // "Name: value", sent with every request (hosts.toml)
};

// One place a registry host is reached at (containerd's RegistryHost): the host itself, or a
// mirror or another server that hosts.toml names (lib/images/hosts_config.h).
struct RegistryEndpoint {
  std::string scheme = "https";
  // "mirror.local:5000". The key for credentials and --insecure-registry (options.hosts), bearer
  // tokens, metrics and error messages. Empty in a hosts.toml without `server`: the host itself.
  std::string host;
  std::string path = "/v2";  // the API root
  bool pull = true;          // capabilities: blobs and manifests by digest
  bool resolve = true;       // tags to digests
  bool push = true;
  RegistryHostConfig config;  // TLS and headers (credentials come from options.hosts)

  // "<scheme>://<host><path>/"
  std::string BaseUrl() const;
};

struct RegistryClientOptions {
  // By host ("127.0.0.1:5000"); a host not listed gets the defaults (https, system CAs,
  // anonymous).
  std::map<std::string, RegistryHostConfig> hosts;
  // containerd's hosts.toml directories by directory name (LoadHostsDir, hosts_config.h): where
  // each host is reached. A host with no directory (and no `_default`) is reached at itself.
  std::map<std::string, std::vector<RegistryEndpoint>> host_dirs;
  int max_attempts = 4;  // per request, first try included
  absl::Duration initial_backoff = absl::Milliseconds(200);
  absl::Duration max_backoff = absl::Seconds(5);
  absl::Duration connect_timeout = absl::Seconds(15);
  std::string user_agent = "berth";
  // Blobs larger than this are uploaded in chunks of upload_chunk_size bytes.
  int64_t chunked_upload_threshold = int64_t{64} << 20;
  int64_t upload_chunk_size = int64_t{16} << 20;
  // Blobs with more than blob_chunk_size bytes left to fetch are fetched as parallel Range
  // requests of that many bytes, blob_parallel_chunks at a time, when the registry honours
  // Range (registry_chunked.h); the chunks held in memory across all blobs never exceed
  // blob_chunk_memory bytes (0: chunk size x parallel chunks). blob_chunk_size 0 (the
  // default) or blob_parallel_chunks 1: one GET per blob. Off by default: against a local
  // registry on 2 CPUs chunks made a 641 MB pull ~1.1 s slower (bench/README.md, pull.sh);
  // they pay where one connection is slower than the registry (a far or throttled one).
  int64_t blob_chunk_size = 0;
  int blob_parallel_chunks = 4;
  int64_t blob_chunk_memory = 0;
  // Connections open at once to one registry host, and in all (CURLMOPT_MAX_HOST_CONNECTIONS,
  // CURLMOPT_MAX_TOTAL_CONNECTIONS); requests beyond wait for a free one. Streams multiplexed
  // on an HTTP/2 connection do not count. Sized above imaged's concurrent downloads and
  // chunks.
  long max_host_connections = 16;
  long max_total_connections = 64;
  // Body bytes held per request between libcurl and the thread that consumes them; a request
  // whose consumer lags this far behind is paused (its connection's other streams go on).
  int64_t transfer_buffer = int64_t{512} << 10;
  // Called after every HTTP request this client makes (retries, auth challenges and token
  // requests included) with the registry host it was for and the HTTP status, 0 when no
  // response came (connection or TLS failure). From several threads at once; must not block.
  // Empty: nothing is called.
  std::function<void(absl::string_view host, int status)> on_response;
  // Called after a request that opened a new connection (rather than reusing one a
  // request before it left open), with the HTTP version it spoke there: 1 (1.0 or 1.1), 2 or 3.
  // Same threads and rules as on_response. Empty: nothing is called.
  std::function<void(absl::string_view host, int http_version)> on_connection;
  // Set: token requests with a password ask for a refresh token too (OAuth2 access_type=offline,
  // lib/images/registry_auth.h), and each one the token server gives is passed here with the
  // registry host (berth login stores it in place of the password). Empty: none is asked for.
  std::function<void(absl::string_view host, const std::string& refresh_token)> on_refresh_token;
  // The clock bearer token expiry is judged by; empty: absl::Now (tests move it forward).
  std::function<absl::Time()> clock;
};

// Called with each piece of a blob in order; an error stops the transfer and is returned.
using BlobCallback = std::function<absl::Status(absl::string_view data)>;

// What PushBlob needs besides the descriptor.
struct BlobUpload {
  // The blob's bytes from `offset` on; called again when a request is sent again.
  std::function<absl::StatusOr<std::unique_ptr<ByteSource>>(int64_t offset)> open;
  // A repository path on the same registry that holds the blob ("library/alpine"); empty: no
  // mount is tried.
  std::string mount_from;
  // The bytes of the blob sent so far; from the calling thread. May be empty.
  std::function<void(int64_t sent)> progress;
};

enum class BlobPushResult { kMounted, kUploaded };

class RegistryClient {
 public:
  static std::unique_ptr<RegistryClient> Create(RegistryClientOptions options);
  virtual ~RegistryClient() = default;

  // The descriptor `ref` names: media type (Content-Type), digest and size of its manifest or
  // index. With a digest in `ref`, that digest, checked against the registry's.
  virtual absl::StatusOr<Descriptor> Resolve(const Context& ctx, const Reference& ref) = 0;

  // The manifest or index `desc` names in `ref`'s repository, verified against desc's digest
  // and size and validated for desc's media type (the Content-Type when desc has none).
  struct Document {
    std::string raw;  // the bytes exactly as served (what contentd stores)
    std::string media_type;
    std::optional<Index> index;        // set for an index / manifest list
    std::optional<Manifest> manifest;  // set for a manifest
  };
  virtual absl::StatusOr<Document> FetchManifest(const Context& ctx, const Reference& ref,
                                                 const Descriptor& desc) = 0;

  // Streams the blob `desc` names, from byte `offset` on, into `sink`.
  // With offset 0 the whole stream is checked against desc's size and digest. With offset > 0
  // (resuming what a store already holds) the size is checked, and the digest too when
  // `prefix` is a Digester already fed the first `offset` bytes; without it the digest is left
  // to the store the bytes go to (contentd checks at commit). `prefix` is used and advanced.
  virtual absl::Status FetchBlob(const Context& ctx, const Reference& ref,
                                 const oci::Descriptor& desc, int64_t offset, Digester* prefix,
                                 const BlobCallback& sink) = 0;
  // The same into a ByteSink; the sink is not closed.
  absl::Status FetchBlob(const Context& ctx, const Reference& ref, const oci::Descriptor& desc,
                         ByteSink* sink, int64_t offset = 0, Digester* prefix = nullptr) {
    return FetchBlob(ctx, ref, desc, offset, prefix,
                     [sink](absl::string_view data) { return sink->Write(data); });
  }

  // --- Write side.

  // Whether `ref`'s repository has the blob (HEAD /v2/<path>/blobs/<digest>).
  virtual absl::StatusOr<bool> HasBlob(const Context& ctx, const Reference& ref,
                                       const oci::Descriptor& desc) = 0;
  // Makes `desc` a blob of `ref`'s repository, mounted or uploaded (see above).
  virtual absl::StatusOr<BlobPushResult> PushBlob(const Context& ctx, const Reference& ref,
                                                  const oci::Descriptor& desc,
                                                  const BlobUpload& upload) = 0;
  // Resolve, asked of the endpoint pushes go to (the first with the push capability in the
  // host's hosts.toml, never a pull-only mirror): what a push checks before it PUTs a document.
  virtual absl::StatusOr<Descriptor> ResolveForPush(const Context& ctx, const Reference& ref) = 0;
  // PUTs `raw` (the manifest or index `desc` names, desc.media_type as Content-Type) into
  // `ref`'s repository as `object`: a tag, or desc's digest string.
  virtual absl::Status PushManifest(const Context& ctx, const Reference& ref,
                                    const Descriptor& desc, absl::string_view raw,
                                    absl::string_view object) = 0;
  // GET /v2/ on `host` with its credentials, answering the auth challenge as any request does
  // (a token with no scope, or Basic): OK when the registry accepts them, Unauthenticated
  // naming the registry when it does not. What `berth login` checks before it stores them.
  virtual absl::Status CheckLogin(const Context& ctx, absl::string_view host) = 0;
};

// The endpoints requests for registry `host` go to, in the order they are tried: its hosts.toml
// directory's (mirrors, then the server), else the host itself. Each endpoint's config is
// options.hosts[endpoint host] (credentials, --insecure-registry) with what hosts.toml sets on
// top; the server a hosts.toml leaves unnamed is `host` (docker.io: registry-1.docker.io) over
// https, or plain http when options.hosts marks `host` plain_http.
std::vector<RegistryEndpoint> ResolveEndpoints(const RegistryClientOptions& options,
                                               absl::string_view host);

// The Accept header Resolve and FetchManifest send.
std::string ManifestAcceptHeader();

}  // namespace berth::images
