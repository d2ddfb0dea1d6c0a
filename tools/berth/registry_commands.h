#pragma once

// What `berth pull`, `push`, `login` and `logout` share: the per-blob progress lines, and the
// registry credentials the CLI sends with a request.
//
// Credentials: `berth login` stores them in berth's own file (BERTH_AUTH_FILE, default
// $XDG_CONFIG_HOME/berth/auth.json, else $HOME/.config/berth/auth.json; docker's config.json
// layout, 0600). For a pull or a push the CLI looks up the reference's registry in that file,
// then in the user's docker config ($DOCKER_CONFIG/config.json or ~/.docker/config.json), and
// sends what it finds on the request (as containerd's clients resolve credentials on the client
// side); imaged falls back to its own --docker-config file.

#include <map>
#include <string>

#include <google/protobuf/repeated_field.h>
#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "berth/distribution/v1/distribution.pb.h"
#include "lib/base/grpc_status.h"
#include "tools/berth/cli.h"

namespace berth::cli {

// berth's credentials file (see above).
std::string BerthAuthFile();

// Adds the credentials for `reference`'s registry, if the CLI has any, to `auths`. A malformed
// reference adds nothing (imaged reports it); a malformed credentials file is an error.
absl::Status AddCredentials(
    absl::string_view reference,
    google::protobuf::RepeatedPtrField<::berth::distribution::v1::RegistryAuth>* auths);

// Prints one blob's progress: with --json every message as a JSON line; otherwise one line
// "DIGEST STATE SIZE" each time a blob's state changes (`last` remembers the states printed).
void PrintBlobProgress(const Session& session, const ::berth::distribution::v1::BlobProgress& blob,
                       std::map<std::string, int>* last);

// Reads a Pull or Push stream to its end, printing each blob's progress (PrintBlobProgress);
// stores the image the last message carries in *image. The stream's status, explained
// (Session::Explain) for imaged.
template <typename Progress, typename Image>
absl::Status ReadProgress(Session& session, grpc::ClientReader<Progress>& reader, Image* image) {
  std::map<std::string, int> last;  // by digest: the state last printed
  Progress message;
  while (reader.Read(&message)) {
    for (const ::berth::distribution::v1::BlobProgress& blob : message.blobs()) {
      PrintBlobProgress(session, blob, &last);
    }
    if (message.has_image()) {
      *image = message.image();
    }
  }
  return session.Explain("imaged", FromGrpcStatus(reader.Finish()));
}

}  // namespace berth::cli
