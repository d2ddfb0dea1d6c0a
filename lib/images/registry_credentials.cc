#include "lib/images/registry_credentials.h"

#include <sys/wait.h>

#include <cstdlib>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "lib/base/posix.h"
#include "lib/base/program.h"
#include "lib/base/status_macros.h"
#include "lib/images/reference.h"

namespace berth::images {
namespace {

absl::StatusOr<nlohmann::json> ReadDocument(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (absl::IsNotFound(text.status())) {
    return nlohmann::json::object();
  }
  BERTH_RETURN_IF_ERROR(text.status());
  nlohmann::json doc = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("credentials file ", path, ": not a JSON object"));
  }
  if (doc.contains("auths") && !doc["auths"].is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("credentials file ", path, ": \"auths\" is not an object"));
  }
  return doc;
}

// Drops every key of `auths` naming `host`; whether there was one.
bool EraseHost(nlohmann::json& auths, absl::string_view host) {
  bool erased = false;
  for (auto it = auths.begin(); it != auths.end();) {
    if (CredentialHost(it.key()) == host) {
      it = auths.erase(it);
      erased = true;
    } else {
      ++it;
    }
  }
  return erased;
}

// The credential helper a config names for `host`: its credHelpers entry, else its credsStore;
// empty for none.
absl::StatusOr<std::string> HelperFor(const nlohmann::json& doc, const std::string& path,
                                      absl::string_view host) {
  auto helpers = doc.find("credHelpers");
  if (helpers != doc.end()) {
    if (!helpers->is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat("credentials file ", path, ": \"credHelpers\" is not an object"));
    }
    for (auto it = helpers->begin(); it != helpers->end(); ++it) {
      if (CredentialHost(it.key()) == host && it->is_string() && !it->get<std::string>().empty()) {
        return it->get<std::string>();
      }
    }
  }
  auto store = doc.find("credsStore");
  if (store != doc.end() && store->is_string()) {
    return store->get<std::string>();
  }
  return std::string();
}

absl::Status WriteDocument(const std::string& path, const nlohmann::json& doc) {
  size_t slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    BERTH_RETURN_IF_ERROR(MakeDirs(path.substr(0, slash), 0700));
  }
  return WriteFileAtomic(path, doc.dump(2) + "\n", 0600);
}

// The `auths` entries of a config document.
absl::StatusOr<std::map<std::string, RegistryCredentials>> ParseAuths(const nlohmann::json& doc) {
  std::map<std::string, RegistryCredentials> result;
  auto auths = doc.find("auths");
  if (auths == doc.end()) {
    return result;
  }
  if (!auths->is_object()) {
    return absl::InvalidArgumentError("credentials: \"auths\" is not an object");
  }
  for (auto it = auths->begin(); it != auths->end(); ++it) {
    if (!it->is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat("credentials for ", it.key(), ": not an object"));
    }
    RegistryCredentials creds;
    std::string auth = it->value("auth", "");
    if (!auth.empty()) {
      std::string decoded;
      size_t colon = std::string::npos;
      if (absl::Base64Unescape(auth, &decoded)) {
        colon = decoded.find(':');
      }
      if (colon == std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat(
            "credentials for ", it.key(), ": \"auth\" is not base64 of user:password"));
      }
      creds.username = decoded.substr(0, colon);
      creds.password = decoded.substr(colon + 1);
    } else {
      creds.username = it->value("username", "");
      creds.password = it->value("password", "");
    }
    if (auto token = it->find("identitytoken"); token != it->end() && token->is_string()) {
      creds.identity_token = token->get<std::string>();
    }
    if (creds.username.empty() && creds.password.empty() && creds.identity_token.empty()) {
      continue;  // a helper's placeholder
    }
    result[CredentialHost(it.key())] = std::move(creds);
  }
  return result;
}

}  // namespace

std::string CredentialHost(absl::string_view key) {
  absl::string_view host = key;
  if (!absl::ConsumePrefix(&host, "https://")) {
    absl::ConsumePrefix(&host, "http://");
  }
  host = host.substr(0, host.find('/'));
  if (host == "index.docker.io" || host == "registry-1.docker.io") {
    return std::string(kDockerHubDomain);
  }
  return std::string(host);
}

absl::StatusOr<std::map<std::string, RegistryCredentials>> ParseCredentials(
    absl::string_view json) {
  nlohmann::json doc = nlohmann::json::parse(json.begin(), json.end(), nullptr,
                                             /*allow_exceptions=*/false);
  if (!doc.is_object()) {
    return absl::InvalidArgumentError("credentials: not a JSON object");
  }
  return ParseAuths(doc);
}

absl::StatusOr<std::map<std::string, RegistryCredentials>> ReadCredentialsFile(
    const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (absl::IsNotFound(text.status())) {
    return std::map<std::string, RegistryCredentials>();
  }
  BERTH_RETURN_IF_ERROR(text.status());
  absl::StatusOr<std::map<std::string, RegistryCredentials>> creds = ParseCredentials(*text);
  if (!creds.ok()) {
    return absl::Status(creds.status().code(),
                        absl::StrCat("credentials file ", path, ": ", creds.status().message()));
  }
  return creds;
}

absl::StatusOr<std::optional<RegistryCredentials>> RunCredentialHelper(
    absl::string_view helper, absl::string_view host, const HelperLimits& limits) {
  const std::string program = absl::StrCat("docker-credential-", helper);
  if (absl::StrContains(helper, '/')) {
    return absl::InvalidArgumentError(absl::StrCat("credential helper ", program, ": not a name"));
  }
  ProgramOptions options;
  options.input = host == kDockerHubDomain ? "https://index.docker.io/v1/" : std::string(host);
  options.capture_stderr = false;
  options.timeout = limits.timeout;
  options.ctx = limits.ctx;
  int wait_status = 0;
  absl::StatusOr<std::string> out = RunProgram({program, "get"}, &wait_status, options);
  if (absl::IsNotFound(out.status())) {
    return absl::FailedPreconditionError(
        absl::StrCat("credential helper ", program, " (for ", host, "): not found in PATH"));
  }
  if (!out.ok()) {
    return absl::Status(out.status().code(), absl::StrCat("credential helper ", program,
                                                          " (for ", host, "): ",
                                                          out.status().message()));
  }
  const absl::string_view said = absl::StripAsciiWhitespace(*out);
  if (!WIFEXITED(wait_status) || WEXITSTATUS(wait_status) != 0) {
    // The helpers' protocol: this message on stdout means "nothing stored for that server".
    if (absl::StrContains(said, "credentials not found")) {
      return std::nullopt;
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "credential helper ", program, " get ", options.input, " failed",
        WIFEXITED(wait_status) ? absl::StrCat(" (exit ", WEXITSTATUS(wait_status), ")") : "",
        said.empty() ? "" : ": ", said.substr(0, 512)));
  }
  nlohmann::json answer = nlohmann::json::parse(said.begin(), said.end(), nullptr,
                                                /*allow_exceptions=*/false);
  if (!answer.is_object() || !answer.value("Username", nlohmann::json()).is_string() ||
      !answer.value("Secret", nlohmann::json()).is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat("credential helper ", program, " get ", options.input,
                     ": the answer is not {\"Username\": ..., \"Secret\": ...}"));
  }
  RegistryCredentials creds;
  creds.username = answer["Username"].get<std::string>();
  creds.password = answer["Secret"].get<std::string>();
  if (creds.username == "<token>") {  // docker's spelling of an identity token
    creds.identity_token = std::move(creds.password);
    creds.username.clear();
    creds.password.clear();
  }
  if (creds.username.empty() && creds.password.empty() && creds.identity_token.empty()) {
    return std::nullopt;
  }
  return creds;
}

absl::StatusOr<std::optional<RegistryCredentials>> LookupCredentials(
    const std::string& path, absl::string_view host, const HelperLimits& limits) {
  BERTH_ASSIGN_OR_RETURN(nlohmann::json doc, ReadDocument(path));
  BERTH_ASSIGN_OR_RETURN(std::string helper, HelperFor(doc, path, host));
  if (!helper.empty()) {
    return RunCredentialHelper(helper, host, limits);
  }
  absl::StatusOr<std::map<std::string, RegistryCredentials>> all = ParseAuths(doc);
  if (!all.ok()) {
    return absl::Status(all.status().code(),
                        absl::StrCat("credentials file ", path, ": ", all.status().message()));
  }
  auto it = all->find(std::string(host));
  if (it == all->end()) {
    return std::nullopt;
  }
  return it->second;
}

absl::Status StoreCredentials(const std::string& path, absl::string_view host,
                              const RegistryCredentials& credentials) {
  BERTH_ASSIGN_OR_RETURN(nlohmann::json doc, ReadDocument(path));
  nlohmann::json& auths = doc["auths"];
  if (auths.is_null()) {
    auths = nlohmann::json::object();
  }
  EraseHost(auths, host);
  nlohmann::json& entry = auths[std::string(host)];
  if (credentials.identity_token.empty()) {
    entry = {{"auth", absl::Base64Escape(
                          absl::StrCat(credentials.username, ":", credentials.password))}};
  } else {
    entry = {{"auth", absl::Base64Escape(absl::StrCat(credentials.username, ":"))},
             {"identitytoken", credentials.identity_token}};
  }
  return WriteDocument(path, doc);
}

absl::Status RemoveCredentials(const std::string& path, absl::string_view host) {
  BERTH_ASSIGN_OR_RETURN(nlohmann::json doc, ReadDocument(path));
  if (!doc.contains("auths") || !EraseHost(doc["auths"], host)) {
    return absl::NotFoundError(absl::StrCat("not logged in to ", host, " (", path, ")"));
  }
  return WriteDocument(path, doc);
}

std::string DefaultDockerConfigPath() {
  if (const char* dir = std::getenv("DOCKER_CONFIG"); dir != nullptr && dir[0] != '\0') {
    return absl::StrCat(dir, "/config.json");
  }
  const char* home = std::getenv("HOME");
  return absl::StrCat(home != nullptr && home[0] != '\0' ? home : "/root",
                      "/.docker/config.json");
}

}  // namespace berth::images
