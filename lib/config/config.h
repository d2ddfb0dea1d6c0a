#pragma once

// Configuration shared by every daemon: one TOML file (/etc/berth/<daemon>.toml by default,
// or --config), flags that override it, and a default for every option so a daemon starts with
// no file at all. Precedence: flag > TOML > default.
//
// TOML keys (top level) for the common options: root, state, address, metrics_address,
// nats_url, nats_credentials (or nats_user + nats_password), nats_tls_ca, nats_tls_cert,
// nats_tls_key, nats_tls_server_name, log_level, default_namespace, and `<peer>_address` for
// each peer daemon
// (contentd_address, ...). A daemon's own options live under a table named after it
// ([contentd]) and are read with DaemonConfig::toml().

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <toml++/toml.h>

#include "absl/status/status.h"
#include "lib/events/nats_tls.h"

namespace berth::config {

struct CommonOptions {
  std::string daemon;            // "contentd"
  std::string config_file;       // the file read, empty if none
  std::string root;              // /var/lib/berth/<daemon>
  std::string state;             // /run/berth/<daemon>
  std::string address;           // /run/berth/<daemon>.sock
  std::string metrics_address;   // "" (off); e.g. 127.0.0.1:9310
  std::string nats_url;          // "" (events go only to the outbox)
  std::string nats_credentials;  // "" or user:password (TOML nats_user/nats_password too)
  events::NatsTls nats_tls;      // nats_tls_ca, nats_tls_cert, nats_tls_key, nats_tls_server_name
  std::string log_level = "info";
  std::string default_namespace = "default";
  // Addresses of the peer daemons this one talks to, by daemon name. Defaults to
  // /run/berth/<peer>.sock for each peer passed to DaemonConfig's constructor.
  std::map<std::string, std::string> peers;
};

// Usage in a main.cc:
//   DaemonConfig cfg("snapshotd", {"contentd"});
//   std::string snapshotter = "overlayfs";
//   cfg.AddOption("--snapshotter", "snapshotter", &snapshotter, "overlayfs or native");
//   if (absl::Status st = cfg.Parse(argc, argv); !st.ok()) { ... exit 2 }
//   cfg.options().root ...
class DaemonConfig {
 public:
  DaemonConfig(std::string daemon, std::vector<std::string> peers);
  ~DaemonConfig();
  // Flags are bound to members' addresses: neither copyable nor movable.
  DaemonConfig(const DaemonConfig&) = delete;
  DaemonConfig& operator=(const DaemonConfig&) = delete;

  // A daemon-specific option: flag `flag` (e.g. "--snapshotter"), TOML key `key` in the
  // daemon's own table ([snapshotd] snapshotter = "..."). *target holds the default on entry.
  void AddOption(const std::string& flag, const std::string& key, std::string* target,
                 const std::string& help);
  void AddOption(const std::string& flag, const std::string& key, int64_t* target,
                 const std::string& help);
  void AddOption(const std::string& flag, const std::string& key, bool* target,
                 const std::string& help);

  // Parses flags, reads the TOML file, applies precedence. --help prints usage and exits 0.
  // Call once, after every AddOption. --version prints "<daemon> (berth) <version>", exits 0.
  // log_level (flag or TOML) must be debug, trace, info, warn, warning or error. An unknown
  // top-level TOML key is an error (typos do not pass silently); keys inside [<daemon>] that
  // no AddOption claims are left for the daemon to read through toml().
  // TOML nats_user (+ nats_password) set nats_credentials to "user:password" unless
  // nats_credentials is given by flag or TOML. options().config_file is the file actually read.
  // A bad flag, an unreadable or malformed file given with --config, or a wrong-typed key is
  // InvalidArgument with a message naming the file, line and key. A missing default file is
  // fine.
  absl::Status Parse(int argc, char** argv);

  const CommonOptions& options() const { return options_; }
  // The daemon's own TOML table (empty if none).
  const toml::table& toml() const { return daemon_table_; }
  CLI::App& app() { return *app_; }

 private:
  CommonOptions options_;
  std::unique_ptr<CLI::App> app_;
  toml::table daemon_table_;
  std::vector<std::function<absl::Status(const toml::table&)>> apply_toml_;
  // The first common_apply_count_ entries of apply_toml_ read the top-level table, the rest
  // the daemon's table.
  size_t common_apply_count_ = 0;
  std::vector<std::string> common_keys_;  // known top-level keys

  absl::Status TypeError(const toml::node& node, const std::string& key,
                         const char* want) const;
  absl::Status ApplyString(const toml::table& table, const std::string& key,
                           const std::string& display_key, const CLI::Option* flag,
                           std::string* target) const;
};

}  // namespace berth::config
