#pragma once

// What `berth pull`, `push`, `login` and `logout` share: the registry credentials the CLI sends
// with a request.
//
// Credentials: `berth login` stores them in berth's own file (BERTH_AUTH_FILE, default
// $XDG_CONFIG_HOME/berth/auth.json, else $HOME/.config/berth/auth.json; docker's config.json
// layout, 0600). For a pull or a push the CLI looks up the reference's registry in that file,
// then in the user's docker config ($DOCKER_CONFIG/config.json or ~/.docker/config.json), and
// sends what it finds on the request (as containerd's clients resolve credentials on the client
// side); imaged falls back to its own --docker-config file.

#include <string>

#include <google/protobuf/repeated_field.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "berth/distribution/v1/distribution.pb.h"
#include "tools/berth/cli.h"

namespace berth::cli {

// berth's credentials file (see above).
std::string BerthAuthFile();

// Adds the credentials for `reference`'s registry, if the CLI has any, to `auths`. A malformed
// reference adds nothing (imaged reports it); a malformed credentials file is an error.
absl::Status AddCredentials(
    absl::string_view reference,
    google::protobuf::RepeatedPtrField<::berth::distribution::v1::RegistryAuth>* auths);

}  // namespace berth::cli
