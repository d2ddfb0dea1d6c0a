#pragma once

// The write side of the registry client (lib/images/registry_client.h) over RegistryHttp:
// blob checks, cross-repository mounts, monolithic and chunked uploads, manifest PUTs and the
// login check. Internal to berth_registry; the contract and its promises are RegistryClient's.
//
// Every write goes to one endpoint of the registry host, the first its hosts.toml gives the
// `push` capability (containerd's pusher does the same), with that endpoint's TLS settings,
// headers and scheme; without a hosts.toml that is the host itself. The login check asks the
// same endpoint, so the credentials `berth login` stores are the ones a push will use.

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/base/context.h"
#include "lib/images/reference.h"
#include "lib/images/registry_client.h"
#include "lib/images/registry_http.h"

namespace berth::images {

// "repository:<path>:pull,push".
std::string PushScope(absl::string_view path);

// The endpoint writes to `host` go to (above). FailedPrecondition naming the registry when its
// hosts.toml gives no endpoint the push capability.
absl::StatusOr<RegistryEndpoint> PushEndpoint(const RegistryClientOptions& options,
                                              absl::string_view host);

absl::StatusOr<bool> HasBlobOver(RegistryHttp& http, const Context& ctx, const Reference& ref,
                                 const oci::Descriptor& desc);
absl::StatusOr<BlobPushResult> PushBlobOver(RegistryHttp& http, const Context& ctx,
                                            const Reference& ref, const oci::Descriptor& desc,
                                            const BlobUpload& upload);
absl::Status PushManifestOver(RegistryHttp& http, const Context& ctx, const Reference& ref,
                              const Descriptor& desc, absl::string_view raw,
                              absl::string_view object);
absl::Status CheckLoginOver(RegistryHttp& http, const Context& ctx, absl::string_view host);

}  // namespace berth::images
