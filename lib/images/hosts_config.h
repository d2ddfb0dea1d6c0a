#pragma once

// containerd's registry host configuration (its docs/hosts.md), read the way containerd reads
// it: a directory (imaged's --hosts-dir, default /etc/berth/certs.d) holding one directory per
// registry host, named after the host ("ghcr.io", "127.0.0.1:5000" or containerd's
// "127.0.0.1_5000_"), or `_default` for every host without one. In it:
//
//   hosts.toml       server = "https://registry.example.com"   # the upstream, tried last
//                    capabilities, ca, client, skip_verify, header, override_path   # for it
//                    [host."http://mirror.local:5000"]        # mirrors, tried in file order
//                      capabilities = ["pull", "resolve"]      # of pull, resolve, push
//                      ca = "ca.pem"                           # or ["a.pem", "b.pem"]; relative
//                                                              # paths are the host dir's
//                      client = [["client.cert", "client.key"]] # or "both.pem", or ["both.pem"]
//                      skip_verify = true
//                      header = { X-Tenant = "a", X-Many = ["1", "2"] }
//                      override_path = true                    # the URL's path is the API root
//                                                              # (no /v2 appended)
//   *.crt, *.cert + *.key   without a hosts.toml, as docker's certs.d: CAs and client pairs
//                           for the host itself.
//
// An http:// URL is reached over plain HTTP. A URL without a scheme is https. Without `server`
// the upstream is the host itself. Differences from containerd: every file is read once, when
// LoadHostsDir is called (imaged: at start), and a malformed hosts.toml is an error naming the
// file, line and key instead of being skipped; only the first client pair is presented.

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/images/registry_client.h"

namespace berth::images {

// The hosts directory's entries by directory name ("ghcr.io", "127.0.0.1_5000_", "_default"),
// each the endpoints of that host in the order they are tried (the upstream last; its `host`
// left empty when hosts.toml names no server). A missing directory is an empty map.
// InvalidArgument naming the file, line and key for a malformed hosts.toml, an unknown
// capability, a value of the wrong type; NotFound naming the file for a CA or client certificate
// that cannot be read.
absl::StatusOr<std::map<std::string, std::vector<RegistryEndpoint>>> LoadHostsDir(
    const std::string& dir);

// One host directory: its hosts.toml, or docker's certificate files when there is none.
absl::StatusOr<std::vector<RegistryEndpoint>> LoadHostDir(const std::string& dir);

// hosts.toml's text; `host_dir` resolves relative paths, `file` names the file in errors.
absl::StatusOr<std::vector<RegistryEndpoint>> ParseHostsToml(absl::string_view text,
                                                             const std::string& host_dir,
                                                             const std::string& file);

// The directory names tried for `host`, in order: containerd's "host_port_" form (for a host
// with a port), the host as written, then "_default".
std::vector<std::string> HostDirNames(absl::string_view host);

}  // namespace berth::images
