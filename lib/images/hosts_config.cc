#include "lib/images/hosts_config.h"

#include <dirent.h>
#include <sys/stat.h>
#include <toml++/toml.h>

#include <algorithm>
#include <string_view>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "lib/base/posix.h"
#include "lib/base/status_macros.h"

namespace berth::images {
namespace {

constexpr char kHostsFile[] = "hosts.toml";

// Errors name the file, the line and the key, as lib/config's do.
class Errors {
 public:
  explicit Errors(std::string file) : file_(std::move(file)) {}
  absl::Status At(const toml::node& node, absl::string_view key, absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(file_, ":", node.source().begin.line, ": key \"", key, "\": ", what));
  }
  const std::string& file() const { return file_; }

 private:
  std::string file_;
};

std::string AbsPath(const std::string& path, const std::string& base) {
  return absl::StartsWith(path, "/") ? path : absl::StrCat(base, "/", path);
}

bool IsDir(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// The file's text; NotFound naming it and what it is for.
absl::StatusOr<std::string> ReadNamed(const std::string& path, absl::string_view what) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) {
    return absl::NotFoundError(absl::StrCat(what, " ", path, ": ", text.status().message()));
  }
  return text;
}

// A string, or an array of strings, as a list.
absl::StatusOr<std::vector<std::string>> Strings(const toml::node& node, absl::string_view key,
                                                 const Errors& errors) {
  if (const auto* value = node.as_string()) {
    return std::vector<std::string>{value->get()};
  }
  const toml::array* array = node.as_array();
  if (array == nullptr) {
    return errors.At(node, key, "expected a string or an array of strings");
  }
  std::vector<std::string> out;
  for (const toml::node& item : *array) {
    const auto* value = item.as_string();
    if (value == nullptr) {
      return errors.At(item, key, "expected a string or an array of strings");
    }
    out.push_back(value->get());
  }
  return out;
}

absl::Status AddCaFiles(const std::vector<std::string>& files, RegistryHostConfig* config) {
  for (const std::string& file : files) {
    BERTH_ASSIGN_OR_RETURN(std::string pem, ReadNamed(file, "CA certificate"));
    absl::StrAppend(&config->ca_pem, pem, "\n");
  }
  return absl::OkStatus();
}

// `client`: "both.pem", ["both.pem", ...] or [["cert", "key"], ...]. The first pair is used.
absl::Status ParseClient(const toml::node& node, const std::string& base, const Errors& errors,
                         RegistryHostConfig* config) {
  std::vector<std::pair<std::string, std::string>> pairs;
  if (const auto* value = node.as_string()) {
    pairs.emplace_back(value->get(), "");
  } else if (const toml::array* array = node.as_array()) {
    for (const toml::node& item : *array) {
      if (const auto* one = item.as_string()) {
        pairs.emplace_back(one->get(), "");
        continue;
      }
      BERTH_ASSIGN_OR_RETURN(std::vector<std::string> pair, Strings(item, "client", errors));
      if (pair.size() != 2 || item.as_array() == nullptr) {
        return errors.At(item, "client", "expected a [certificate, key] pair");
      }
      pairs.emplace_back(pair[0], pair[1]);
    }
  } else {
    return errors.At(node, "client", "expected a string, or an array of strings or pairs");
  }
  if (pairs.empty()) {
    return absl::OkStatus();
  }
  config->client_cert = AbsPath(pairs[0].first, base);
  config->client_key =
      pairs[0].second.empty() ? config->client_cert : AbsPath(pairs[0].second, base);
  for (const std::string& file : {config->client_cert, config->client_key}) {
    BERTH_RETURN_IF_ERROR(ReadNamed(file, "client certificate").status());
  }
  return absl::OkStatus();
}

// One table of hosts.toml (the top level, or a [host."URL"]): the endpoint at `url` ("" for a
// top level without `server`).
absl::StatusOr<RegistryEndpoint> ParseEndpoint(const std::string& url, const toml::table& table,
                                               const std::string& base, const Errors& errors,
                                               bool top_level) {
  RegistryEndpoint endpoint;
  bool override_path = false;
  for (const auto& [key_view, node] : table) {
    const std::string key(key_view.str());
    if (key == "server" && top_level) {
      if (!node.is_string()) {
        return errors.At(node, key, "expected a string");
      }
    } else if (key == "host" && top_level) {
      if (!node.is_table()) {
        return errors.At(node, key, "expected tables [host.\"URL\"]");
      }
    } else if (key == "capabilities") {
      BERTH_ASSIGN_OR_RETURN(std::vector<std::string> caps, Strings(node, key, errors));
      endpoint.pull = endpoint.resolve = endpoint.push = false;
      for (const std::string& cap : caps) {
        std::string lower = absl::AsciiStrToLower(cap);
        if (lower == "pull") {
          endpoint.pull = true;
        } else if (lower == "resolve") {
          endpoint.resolve = true;
        } else if (lower == "push") {
          endpoint.push = true;
        } else {
          return errors.At(
              node, key, absl::StrCat("unknown capability \"", cap, "\" (pull, resolve or push)"));
        }
      }
    } else if (key == "ca") {
      BERTH_ASSIGN_OR_RETURN(std::vector<std::string> files, Strings(node, key, errors));
      for (std::string& file : files) {
        file = AbsPath(file, base);
      }
      BERTH_RETURN_IF_ERROR(AddCaFiles(files, &endpoint.config));
    } else if (key == "client") {
      BERTH_RETURN_IF_ERROR(ParseClient(node, base, errors, &endpoint.config));
    } else if (key == "skip_verify") {
      if (!node.is_boolean()) {
        return errors.At(node, key, "expected true or false");
      }
      endpoint.config.skip_verify = node.as_boolean()->get();
    } else if (key == "override_path") {
      if (!node.is_boolean()) {
        return errors.At(node, key, "expected true or false");
      }
      override_path = node.as_boolean()->get();
    } else if (key == "header") {
      const toml::table* headers = node.as_table();
      if (headers == nullptr) {
        return errors.At(node, key, "expected a table of header names");
      }
      for (const auto& [name_view, value] : *headers) {
        const std::string name(name_view.str());
        std::string header_key = absl::StrCat("header.", name);
        BERTH_ASSIGN_OR_RETURN(std::vector<std::string> values, Strings(value, header_key, errors));
        for (const std::string& v : values) {
          endpoint.config.headers.push_back(absl::StrCat(name, ": ", v));
        }
      }
    } else {
      return errors.At(node, key, "unknown key");
    }
  }
  if (url.empty()) {
    endpoint.path = override_path ? "" : "/v2";
    return endpoint;
  }
  absl::string_view rest = url;
  if (absl::ConsumePrefix(&rest, "http://")) {
    endpoint.scheme = "http";
    endpoint.config.plain_http = true;
  } else if (!absl::ConsumePrefix(&rest, "https://") && absl::StrContains(rest, "://")) {
    return errors.At(table, top_level ? "server" : absl::StrCat("host.\"", url, "\""),
                     "only http:// and https:// URLs");
  }
  size_t slash = rest.find('/');
  endpoint.host = std::string(rest.substr(0, slash));
  std::string path(slash == absl::string_view::npos ? "" : rest.substr(slash));
  while (absl::EndsWith(path, "/")) {
    path.pop_back();
  }
  if (endpoint.host.empty()) {
    return errors.At(table, top_level ? "server" : "host",
                     absl::StrCat("no host in \"", url, "\""));
  }
  if (!override_path && !absl::EndsWith(path, "/v2")) {
    path += "/v2";
  }
  endpoint.path = path;
  return endpoint;
}

// docker's certs.d layout: *.crt CAs, *.cert client certificates each with its *.key.
absl::StatusOr<std::vector<RegistryEndpoint>> LoadCertFiles(const std::string& dir) {
  RegistryEndpoint endpoint;
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (struct dirent* entry = ::readdir(d)) {
      names.emplace_back(entry->d_name);
    }
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  std::vector<std::string> cas;
  for (const std::string& name : names) {
    if (absl::EndsWith(name, ".crt")) {
      cas.push_back(absl::StrCat(dir, "/", name));
    } else if (absl::EndsWith(name, ".cert") && endpoint.config.client_cert.empty()) {
      std::string key = absl::StrCat(dir, "/", absl::StripSuffix(name, ".cert"), ".key");
      BERTH_RETURN_IF_ERROR(ReadNamed(key, "client key for " + name).status());
      endpoint.config.client_cert = absl::StrCat(dir, "/", name);
      endpoint.config.client_key = key;
    }
  }
  BERTH_RETURN_IF_ERROR(AddCaFiles(cas, &endpoint.config));
  return std::vector<RegistryEndpoint>{std::move(endpoint)};
}

}  // namespace

std::vector<std::string> HostDirNames(absl::string_view host) {
  std::vector<std::string> names;
  size_t colon = host.rfind(':');
  if (colon != absl::string_view::npos && colon > 0) {
    names.push_back(absl::StrCat(host.substr(0, colon), "_", host.substr(colon + 1), "_"));
  }
  names.emplace_back(host);
  names.emplace_back("_default");
  return names;
}

absl::StatusOr<std::vector<RegistryEndpoint>> ParseHostsToml(absl::string_view text,
                                                             const std::string& host_dir,
                                                             const std::string& file) {
  toml::table root;
  try {
    root = toml::parse(std::string_view(text.data(), text.size()), file);
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(absl::StrCat(file, ":", e.source().begin.line, ":",
                                                   e.source().begin.column, ": ",
                                                   std::string(e.description())));
  }
  Errors errors(file);
  std::vector<RegistryEndpoint> endpoints;
  if (const toml::node* hosts = root.get("host"); hosts != nullptr && hosts->is_table()) {
    // toml++ keeps a table's keys sorted; containerd tries mirrors in file order.
    std::vector<std::pair<toml::source_position, std::string>> order;
    for (const auto& [url_view, node] : *hosts->as_table()) {
      const std::string url(url_view.str());
      if (!node.is_table()) {
        return errors.At(node, absl::StrCat("host.\"", url, "\""), "expected a table");
      }
      order.emplace_back(node.source().begin, url);
    }
    std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
      return a.first.line != b.first.line ? a.first.line < b.first.line
                                          : a.first.column < b.first.column;
    });
    for (const auto& [position, url] : order) {
      BERTH_ASSIGN_OR_RETURN(
          RegistryEndpoint endpoint,
          ParseEndpoint(url, *hosts->as_table()->get(url)->as_table(), host_dir, errors, false));
      endpoints.push_back(std::move(endpoint));
    }
  }
  std::string server;
  if (const toml::node* node = root.get("server"); node != nullptr && node->is_string()) {
    server = node->as_string()->get();
  }
  BERTH_ASSIGN_OR_RETURN(RegistryEndpoint upstream,
                         ParseEndpoint(server, root, host_dir, errors, true));
  endpoints.push_back(std::move(upstream));
  return endpoints;
}

absl::StatusOr<std::vector<RegistryEndpoint>> LoadHostDir(const std::string& dir) {
  const std::string file = absl::StrCat(dir, "/", kHostsFile);
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) {
    return LoadCertFiles(dir);
  }
  BERTH_ASSIGN_OR_RETURN(std::string text, ReadNamed(file, "hosts file"));
  return ParseHostsToml(text, dir, file);
}

absl::StatusOr<std::map<std::string, std::vector<RegistryEndpoint>>> LoadHostsDir(
    const std::string& dir) {
  std::map<std::string, std::vector<RegistryEndpoint>> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    return out;
  }
  std::vector<std::string> names;
  while (struct dirent* entry = ::readdir(d)) {
    std::string name = entry->d_name;
    if (name != "." && name != ".." && IsDir(absl::StrCat(dir, "/", name))) {
      names.push_back(std::move(name));
    }
  }
  ::closedir(d);
  for (const std::string& name : names) {
    BERTH_ASSIGN_OR_RETURN(out[name], LoadHostDir(absl::StrCat(dir, "/", name)));
  }
  return out;
}

}  // namespace berth::images
