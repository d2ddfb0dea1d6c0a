#pragma once

// Image references as docker and containerd's clients read them ("alpine",
// "ghcr.io/org/app:1.2", "127.0.0.1:5000/x@sha256:..."), after the grammar of
// github.com/distribution/reference:
//
//   reference := name [ ":" tag ] [ "@" digest ]
//   name      := [ domain "/" ] path-component ( "/" path-component )*
//   domain    := host [ ":" port ]         host: DNS labels joined by ".", "localhost",
//                                          or an IPv6 address in brackets
//   path-component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//   tag       := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
//
// Normalisation: a first component is a domain only when it holds a "." or ":" or is
// "localhost" (else the name is on docker.io); on docker.io a one-component path gets
// "library/"; "index.docker.io" is docker.io; a reference with neither tag nor digest gets
// the tag "latest".

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/base/digest.h"

namespace berth::images {

inline constexpr absl::string_view kDockerHubDomain = "docker.io";
inline constexpr absl::string_view kDefaultTag = "latest";

struct Reference {
  std::string domain;  // "docker.io", "127.0.0.1:5000", "[::1]:5000"
  std::string path;    // "library/alpine"
  std::string tag;     // may be empty when digest is set
  Digest digest;       // empty unless "@digest" was given

  // Parses and normalises `text`. InvalidArgument naming what is wrong: an empty reference,
  // uppercase in the repository, a 64-hex-digit name (an id, not a reference), a bad tag or
  // digest, a name over 255 characters.
  static absl::StatusOr<Reference> Parse(absl::string_view text);

  // "docker.io/library/alpine": the image name containerd stores records under.
  std::string Name() const { return domain + "/" + path; }
  // The full normalised form: Name, then ":tag" if any, then "@digest" if any.
  std::string String() const;
  // What to ask the registry for: the digest when there is one, else the tag.
  std::string Object() const { return digest.IsEmpty() ? tag : digest.ToString(); }
};

}  // namespace berth::images
