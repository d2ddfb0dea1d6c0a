#pragma once

// Registry credentials in docker's config.json layout, the file `docker login` writes and
// containerd's clients (nerdctl, ctr via --user) read:
//
//   {"auths": {"127.0.0.1:5000": {"auth": "<base64 of user:password>"},
//              "https://index.docker.io/v1/": {"username": "u", "password": "p"}}}
//
// Keys are registry hosts, possibly written as URLs; they are matched by host (CredentialHost).
// An entry may hold an `identitytoken` instead of a password: the OAuth2 refresh token
// `docker login` (and `berth login`) store when the registry's token server issues one
// ({"auth": base64("user:"), "identitytoken": "..."}); bearer tokens are then fetched with it
// (lib/images/registry_auth.h, FetchBearerToken).
//
// Credential helpers, as docker reads them: a `credHelpers` entry for the host
// ({"credHelpers": {"ghcr.io": "pass"}}), else `credsStore` ({"credsStore": "secretservice"}),
// names a helper, and then the credentials are the helper's, not the `auths` entry's: the
// program `docker-credential-<name>` (searched in PATH) is run as `get` with the server URL on
// stdin (the host; docker.io as https://index.docker.io/v1/) and answers
// {"ServerURL": ..., "Username": ..., "Secret": ...} on stdout. Its "credentials not found"
// answer means none; Username "<token>" means Secret is an identity token. A helper that has
// not answered within its timeout (30 s, or the request's deadline) is killed with its process
// group: DeadlineExceeded naming it.
//
// Who reads which file: imaged reads the docker config it is configured with (`--docker-config`,
// default $DOCKER_CONFIG/config.json, else /root/.docker/config.json) at each pull and push.
// The berth CLI reads berth's own file (`berth login` writes it; BERTH_AUTH_FILE, default
// $HOME/.config/berth/auth.json), then the user's docker config, and sends the credentials for
// the reference's registry on the Pull/Push request; those win over imaged's file.

#include <map>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lib/base/context.h"

namespace berth::images {

struct RegistryCredentials {
  std::string username;
  std::string password;
  std::string identity_token = {};  // an OAuth2 refresh token, used instead of the password
};

// Bounds on running a credential helper.
struct HelperLimits {
  absl::Duration timeout = absl::Seconds(30);
  const Context* ctx = nullptr;  // its deadline and cancellation bound the helper too
};

// The host a config key names: "https://index.docker.io/v1/", "index.docker.io" and
// "registry-1.docker.io" are "docker.io"; "https://host:5000/v2/" is "host:5000"; a bare host
// stays as it is.
std::string CredentialHost(absl::string_view key);

// The credentials of a config.json, by CredentialHost. InvalidArgument (naming the entry) for a
// document that is not a JSON object, an `auths` that is not an object, or an `auth` that is
// not base64 of "user:password".
absl::StatusOr<std::map<std::string, RegistryCredentials>> ParseCredentials(
    absl::string_view json);

// ParseCredentials of the file at `path`; a missing file has none (an empty map).
absl::StatusOr<std::map<std::string, RegistryCredentials>> ReadCredentialsFile(
    const std::string& path);

// The credentials for `host` the file at `path` gives: through its credential helper for that
// host when it names one (above), else its `auths` entry, if any. A helper that is not in PATH,
// fails or answers something else than its JSON is FailedPrecondition / InvalidArgument naming
// the helper and the host.
absl::StatusOr<std::optional<RegistryCredentials>> LookupCredentials(
    const std::string& path, absl::string_view host, const HelperLimits& limits = {});

// Runs `docker-credential-<helper> get` for `host` (above).
absl::StatusOr<std::optional<RegistryCredentials>> RunCredentialHelper(
    absl::string_view helper, absl::string_view host, const HelperLimits& limits = {});

// Sets `host`'s entry (as {"auth": base64}, plus "identitytoken" with an identity token, whose
// entry then keeps no password, as docker writes it) in the file at `path`, creating it and its
// directory (0700) when missing, keeping every other key of the document. The file is replaced
// atomically (WriteFileAtomic) and is 0600. An existing entry for the same host under another
// spelling (a URL key) is replaced.
absl::Status StoreCredentials(const std::string& path, absl::string_view host,
                              const RegistryCredentials& credentials);

// Removes `host`'s entries (every spelling) from the file at `path`, atomically, 0600.
// NotFound when it has none.
absl::Status RemoveCredentials(const std::string& path, absl::string_view host);

// Docker's config file: $DOCKER_CONFIG/config.json, else $HOME/.docker/config.json, else
// /root/.docker/config.json.
std::string DefaultDockerConfigPath();

}  // namespace berth::images
