#include "lib/config/config.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#ifndef BERTH_VERSION
#define BERTH_VERSION "unknown"
#endif

namespace berth::config {
namespace {

constexpr const char* kLogLevels[] = {"debug", "trace", "info", "warn", "warning", "error"};

bool IsLogLevel(const std::string& level) {
  for (const char* l : kLogLevels) {
    if (level == l) {
      return true;
    }
  }
  return false;
}

const char* TypeName(toml::node_type type) {
  switch (type) {
    case toml::node_type::none: return "nothing";
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
  }
  return "a value";
}

}  // namespace

DaemonConfig::DaemonConfig(std::string daemon, std::vector<std::string> peers) {
  options_.daemon = std::move(daemon);
  const std::string& d = options_.daemon;
  options_.root = absl::StrCat("/var/lib/berth/", d);
  options_.state = absl::StrCat("/run/berth/", d);
  options_.address = absl::StrCat("/run/berth/", d, ".sock");
  for (const std::string& peer : peers) {
    options_.peers[peer] = absl::StrCat("/run/berth/", peer, ".sock");
  }

  app_ = std::make_unique<CLI::App>(absl::StrCat("berth ", d), d);
  app_->set_version_flag("--version", absl::StrCat(d, " (berth) ", BERTH_VERSION));
  app_->add_option("--config", options_.config_file,
                   absl::StrCat("TOML config file (default /etc/berth/", d,
                                ".toml, read if it exists)"));

  // Common options: flag, TOML key, target. A TOML value applies only when the flag is absent.
  auto common = [this](const std::string& flag, const std::string& key, std::string* target,
                       const std::string& help) {
    CLI::Option* opt = app_->add_option(flag, *target, help)->capture_default_str();
    apply_toml_.push_back([this, opt, key, target](const toml::table& root) -> absl::Status {
      return ApplyString(root, key, key, opt, target);
    });
    common_keys_.push_back(key);
  };
  common("--root", "root", &options_.root, "directory for persistent data");
  common("--state", "state", &options_.state, "directory for runtime state");
  common("--address", "address", &options_.address, "unix socket to serve gRPC on");
  common("--metrics-address", "metrics_address", &options_.metrics_address,
         "HOST:PORT for Prometheus /metrics (empty: off)");
  common("--nats-url", "nats_url", &options_.nats_url,
         "NATS server URL (empty: events go only to the outbox)");
  common("--nats-credentials", "nats_credentials", &options_.nats_credentials,
         "NATS user:password (TOML also nats_user and nats_password)");
  common("--nats-tls-ca", "nats_tls_ca", &options_.nats_tls.ca_file,
         "PEM CA bundle NATS's certificate must chain to (TLS; default: the system's)");
  common("--nats-tls-cert", "nats_tls_cert", &options_.nats_tls.cert_file,
         "PEM client certificate for a NATS server that verifies clients");
  common("--nats-tls-key", "nats_tls_key", &options_.nats_tls.key_file,
         "private key of --nats-tls-cert");
  common("--nats-tls-server-name", "nats_tls_server_name", &options_.nats_tls.server_name,
         "name NATS's certificate must carry (default: the host in --nats-url unless an IP)");
  common("--log-level", "log_level", &options_.log_level, "debug, info, warn or error");
  common("--default-namespace", "default_namespace", &options_.default_namespace,
         "namespace for requests without the containerd-namespace header");
  for (auto& [peer, address] : options_.peers) {
    common(absl::StrCat("--", peer, "-address"), absl::StrCat(peer, "_address"), &address,
           absl::StrCat("unix socket of ", peer));
  }
  common_apply_count_ = apply_toml_.size();
  // nats_user / nats_password are TOML-only; known so they are not reported as unknown.
  common_keys_.push_back("nats_user");
  common_keys_.push_back("nats_password");
}

DaemonConfig::~DaemonConfig() = default;

absl::Status DaemonConfig::TypeError(const toml::node& node, const std::string& key,
                                     const char* want) const {
  return absl::InvalidArgumentError(absl::StrCat(
      options_.config_file, ":", node.source().begin.line, ": key \"", key, "\": expected ",
      want, ", got ", TypeName(node.type())));
}

absl::Status DaemonConfig::ApplyString(const toml::table& table, const std::string& key,
                                       const std::string& display_key, const CLI::Option* flag,
                                       std::string* target) const {
  const toml::node* node = table.get(key);
  if (node == nullptr) {
    return absl::OkStatus();
  }
  const auto* value = node->as_string();
  if (value == nullptr) {
    return TypeError(*node, display_key, "a string");
  }
  if (display_key == "log_level" && !IsLogLevel(value->get())) {
    return absl::InvalidArgumentError(
        absl::StrCat(options_.config_file, ":", node->source().begin.line, ": key \"",
                     display_key, "\": unknown log level \"", value->get(),
                     "\" (want debug, info, warn or error)"));
  }
  if (flag->count() == 0) {
    *target = value->get();
  }
  return absl::OkStatus();
}

void DaemonConfig::AddOption(const std::string& flag, const std::string& key,
                             std::string* target, const std::string& help) {
  CLI::Option* opt = app_->add_option(flag, *target, help)->capture_default_str();
  std::string display = absl::StrCat(options_.daemon, ".", key);
  apply_toml_.push_back([this, opt, key, display, target](const toml::table& t) {
    return ApplyString(t, key, display, opt, target);
  });
}

void DaemonConfig::AddOption(const std::string& flag, const std::string& key, int64_t* target,
                             const std::string& help) {
  CLI::Option* opt = app_->add_option(flag, *target, help)->capture_default_str();
  std::string display = absl::StrCat(options_.daemon, ".", key);
  apply_toml_.push_back([this, opt, key, display, target](const toml::table& t) -> absl::Status {
    const toml::node* node = t.get(key);
    if (node == nullptr) {
      return absl::OkStatus();
    }
    const auto* value = node->as_integer();
    if (value == nullptr) {
      return TypeError(*node, display, "an integer");
    }
    if (opt->count() == 0) {
      *target = value->get();
    }
    return absl::OkStatus();
  });
}

void DaemonConfig::AddOption(const std::string& flag, const std::string& key, bool* target,
                             const std::string& help) {
  CLI::Option* opt = app_->add_flag(flag, *target, help)->capture_default_str();
  std::string display = absl::StrCat(options_.daemon, ".", key);
  apply_toml_.push_back([this, opt, key, display, target](const toml::table& t) -> absl::Status {
    const toml::node* node = t.get(key);
    if (node == nullptr) {
      return absl::OkStatus();
    }
    const auto* value = node->as_boolean();
    if (value == nullptr) {
      return TypeError(*node, display, "a boolean");
    }
    if (opt->count() == 0) {
      *target = value->get();
    }
    return absl::OkStatus();
  });
}

absl::Status DaemonConfig::Parse(int argc, char** argv) {
  try {
    app_->parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --help-all, --version
    std::exit(app_->exit(e));
  } catch (const CLI::ParseError& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(options_.daemon, ": ", e.what(), " (see --help)"));
  }
  if (!IsLogLevel(options_.log_level)) {
    return absl::InvalidArgumentError(
        absl::StrCat(options_.daemon, ": --log-level: unknown log level \"", options_.log_level,
                     "\" (want debug, info, warn or error)"));
  }

  const bool explicit_file = app_->get_option("--config")->count() > 0;
  std::string path = explicit_file ? options_.config_file
                                   : absl::StrCat("/etc/berth/", options_.daemon, ".toml");
  options_.config_file.clear();
  std::error_code ec;
  if (!explicit_file && !std::filesystem::exists(path, ec)) {
    return absl::OkStatus();  // no file at all: defaults and flags
  }
  if (!std::filesystem::is_regular_file(path, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config file ", path, ": ",
        std::filesystem::exists(path, ec) ? "not a regular file" : "no such file"));
  }
  std::ifstream in(path, std::ios::binary);
  std::stringstream content;
  content << in.rdbuf();
  if (!in || in.bad()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config file ", path, ": cannot read: ", std::strerror(errno)));
  }
  options_.config_file = path;

  toml::table root;
  try {
    root = toml::parse(content.str(), path);
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ":", e.source().begin.line, ":",
                                                   e.source().begin.column,
                                                   ": malformed TOML: ", std::string(e.description())));
  }

  // The daemon's table, moved out of `root` at the end: toml++ copies lose source lines.
  toml::table empty;
  toml::table* own = &empty;
  for (auto& [key, node] : root) {
    std::string k(key.str());
    if (k == options_.daemon) {
      toml::table* table = node.as_table();
      if (table == nullptr) {
        return TypeError(node, k, "a table");
      }
      own = table;
      continue;
    }
    bool known = false;
    for (const std::string& c : common_keys_) {
      if (c == k) {
        known = true;
        break;
      }
    }
    if (!known) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ":", node.source().begin.line, ": unknown key \"", k, "\" (known: ",
          absl::StrJoin(common_keys_, ", "), "; [", options_.daemon,
          "] for this daemon's own options)"));
    }
  }

  // nats_user / nats_password, unless nats_credentials came from a flag or the file.
  std::string user;
  std::string password;
  for (auto [key, target] : {std::pair<const char*, std::string*>{"nats_user", &user},
                             std::pair<const char*, std::string*>{"nats_password", &password}}) {
    if (const toml::node* node = root.get(key); node != nullptr) {
      if (!node->is_string()) {
        return TypeError(*node, key, "a string");
      }
      *target = node->as_string()->get();
    }
  }

  for (size_t i = 0; i < apply_toml_.size(); ++i) {
    const toml::table& table = i < common_apply_count_ ? root : *own;
    if (absl::Status st = apply_toml_[i](table); !st.ok()) {
      return st;
    }
  }

  daemon_table_ = std::move(*own);

  if (!user.empty() && app_->get_option("--nats-credentials")->count() == 0 &&
      root.get("nats_credentials") == nullptr) {
    options_.nats_credentials = password.empty() ? user : absl::StrCat(user, ":", password);
  }
  return absl::OkStatus();
}

}  // namespace berth::config
