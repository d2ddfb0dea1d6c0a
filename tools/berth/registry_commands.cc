// `berth push NAME [REFERENCE]`: imaged's Distribution.Push, one line per blob state change,
// then "pushed REFERENCE DIGEST". `berth login REGISTRY` checks the credentials against the
// registry and stores them (the identity token its token server gives, if any, in place of the
// password); `berth logout REGISTRY` removes them. The helpers pull shares.

#include "tools/berth/registry_commands.h"

#include <termios.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "berth/distribution/v1/distribution.grpc.pb.h"
#include "lib/base/grpc_status.h"
#include "lib/base/status_macros.h"
#include "lib/images/hosts_config.h"
#include "lib/images/reference.h"
#include "lib/images/registry_client.h"
#include "lib/images/registry_credentials.h"
#include "tools/berth/commands.h"
#include "tools/berth/output.h"
#include "tools/berth/progress.h"

namespace berth::cli {
namespace {

namespace pb = ::berth::distribution::v1;

constexpr absl::string_view kDaemon = "imaged";

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? std::string() : std::string(value);
}

// ---- push

struct PushArgs {
  std::string name;
  std::string reference;
  std::vector<std::string> insecure_registries;
};

absl::Status Push(Session& session, const PushArgs& args) {
  pb::PushRequest request;
  request.set_name(args.name);
  request.set_reference(args.reference);
  for (const std::string& host : args.insecure_registries) {
    request.add_plain_http_hosts(host);
  }
  BERTH_RETURN_IF_ERROR(AddCredentials(args.reference.empty() ? args.name : args.reference,
                                       request.mutable_auths()));
  auto stub = pb::Distribution::NewStub(session.Channel(kDaemon));
  grpc::ClientContext context;
  session.Prepare(&context);
  std::unique_ptr<grpc::ClientReader<pb::PushProgress>> reader = stub->Push(&context, request);
  pb::PushedImage image;
  ReadProgress<pb::PushProgress>(*reader, session.json(), [&](const pb::PushProgress& message) {
    if (message.has_image()) {
      image = message.image();
    }
  });
  BERTH_RETURN_IF_ERROR(session.Explain(kDaemon, FromGrpcStatus(reader->Finish())));
  PrintTarget(session.json(), "pushed", "reference", image.reference(), image.target());
  return absl::OkStatus();
}

// ---- login / logout

struct LoginArgs {
  std::string registry;
  std::string username;
  std::string password;
  bool password_stdin = false;
  std::vector<std::string> insecure_registries;
  std::string hosts_dir = "/etc/berth/certs.d";  // imaged's default
};

// A line typed on the terminal, echoed or not; nullopt when stdin is not a terminal.
std::optional<std::string> Prompt(const std::string& what, bool echo) {
  if (::isatty(STDIN_FILENO) == 0) {
    return std::nullopt;
  }
  std::cerr << what << ": " << std::flush;
  termios saved{};
  bool hide = !echo && ::tcgetattr(STDIN_FILENO, &saved) == 0;
  if (hide) {
    termios quiet = saved;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
  }
  std::string line;
  std::getline(std::cin, line);
  if (hide) {
    ::tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    std::cerr << '\n';
  }
  return line;
}

absl::Status Login(Session& session, LoginArgs args) {
  const std::string host = images::CredentialHost(args.registry);
  if (host.empty()) {
    return UsageError("login: no registry host");
  }
  if (args.password_stdin && !args.password.empty()) {
    return UsageError("login: --password and --password-stdin are exclusive");
  }
  if (args.username.empty()) {
    std::optional<std::string> typed = Prompt("Username", true);
    if (!typed.has_value() || typed->empty()) {
      return UsageError("login: a username is required (-u)");
    }
    args.username = *typed;
  }
  if (args.password_stdin) {
    std::string all((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    args.password = std::string(absl::StripTrailingAsciiWhitespace(all));
  } else if (args.password.empty()) {
    std::optional<std::string> typed = Prompt("Password", false);
    if (!typed.has_value()) {
      return UsageError("login: a password is required (-p or --password-stdin)");
    }
    args.password = *typed;
  }
  if (args.password.empty()) {
    return UsageError("login: empty password");
  }
  images::RegistryClientOptions options;
  // The registry is asked where a push would go, with the TLS settings imaged uses for it.
  BERTH_ASSIGN_OR_RETURN(options.host_dirs, images::LoadHostsDir(args.hosts_dir));
  images::RegistryHostConfig& config = options.hosts[host];
  for (const std::string& insecure : args.insecure_registries) {
    config.plain_http = config.plain_http || images::CredentialHost(insecure) == host;
  }
  config.username = args.username;
  config.password = args.password;
  // A token server that issues refresh tokens gives one for the password (OAuth2
  // access_type=offline); it is stored instead of the password, as `docker login` does.
  std::string identity_token;
  options.on_refresh_token = [&identity_token](absl::string_view, const std::string& token) {
    identity_token = token;
  };
  std::unique_ptr<images::RegistryClient> client =
      images::RegistryClient::Create(std::move(options));
  Context ctx = session.context();
  if (ctx.deadline == absl::InfiniteFuture()) {
    ctx = ctx.WithTimeout(absl::Seconds(60));
  }
  BERTH_RETURN_IF_ERROR(client->CheckLogin(ctx, host));
  const std::string file = BerthAuthFile();
  images::RegistryCredentials stored{args.username, args.password, identity_token};
  if (!identity_token.empty()) {
    stored.password.clear();
  }
  BERTH_RETURN_IF_ERROR(images::StoreCredentials(file, host, stored));
  std::cout << "Login Succeeded (" << host << ", "
            << (identity_token.empty() ? "" : "identity token ") << "stored in " << file << ")"
            << std::endl;
  return absl::OkStatus();
}

absl::Status Logout(const std::string& registry) {
  const std::string host = images::CredentialHost(registry);
  BERTH_RETURN_IF_ERROR(images::RemoveCredentials(BerthAuthFile(), host));
  std::cout << "Removed login credentials for " << host << std::endl;
  return absl::OkStatus();
}

}  // namespace

std::string BerthAuthFile() {
  if (std::string file = Env("BERTH_AUTH_FILE"); !file.empty()) {
    return file;
  }
  if (std::string config = Env("XDG_CONFIG_HOME"); !config.empty()) {
    return config + "/berth/auth.json";
  }
  std::string home = Env("HOME");
  return (home.empty() ? std::string("/root") : home) + "/.config/berth/auth.json";
}

absl::Status AddCredentials(absl::string_view reference,
                            google::protobuf::RepeatedPtrField<pb::RegistryAuth>* auths) {
  absl::StatusOr<images::Reference> ref = images::Reference::Parse(reference);
  if (!ref.ok()) {
    return absl::OkStatus();
  }
  for (const std::string& file : {BerthAuthFile(), images::DefaultDockerConfigPath()}) {
    BERTH_ASSIGN_OR_RETURN(std::optional<images::RegistryCredentials> creds,
                           images::LookupCredentials(file, ref->domain));
    if (creds.has_value()) {
      pb::RegistryAuth* auth = auths->Add();
      auth->set_host(ref->domain);
      auth->set_username(creds->username);
      auth->set_password(creds->password);
      auth->set_identity_token(creds->identity_token);
      return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

void RegisterRegistryCommands(CLI::App& root, Runner& runner) {
  auto push_args = std::make_shared<PushArgs>();
  CLI::App* push = root.add_subcommand(
      "push", "Push an image record through imaged to a registry, one line per blob change");
  push->add_option("NAME", push_args->name, "Image record to push")->required();
  push->add_option("REFERENCE", push_args->reference,
                   "Where to push (e.g. 127.0.0.1:5000/test/copy:v1); default: NAME");
  push->add_option("--insecure-registry", push_args->insecure_registries,
                   "Registry host (HOST[:PORT]) reached over plain HTTP; repeatable")
      ->allow_extra_args(false)  // one host per flag: NAME and REFERENCE may follow
      ->take_all();
  push->callback(
      runner.Wrap([push_args](Session& session) { return Push(session, *push_args); }));

  auto login_args = std::make_shared<LoginArgs>();
  CLI::App* login = root.add_subcommand(
      "login", "Check credentials against a registry and store them (" + BerthAuthFile() + ")");
  login->add_option("REGISTRY", login_args->registry, "Registry host (e.g. 127.0.0.1:5000)")
      ->required();
  login->add_option("-u,--username", login_args->username, "Username");
  login->add_option("-p,--password", login_args->password, "Password");
  login->add_flag("--password-stdin", login_args->password_stdin, "Read the password from stdin");
  login->add_option("--insecure-registry", login_args->insecure_registries,
                    "Registry host (HOST[:PORT]) reached over plain HTTP; repeatable")
      ->allow_extra_args(false)  // one host per flag: REGISTRY may follow
      ->take_all();
  login->add_option("--hosts-dir", login_args->hosts_dir,
                    "containerd's registry hosts directory, as imaged's (<dir>/<host>/hosts.toml: "
                    "ca, client, skip_verify, plain http, push capability)")
      ->capture_default_str();
  login->callback(runner.Wrap([login_args](Session& session) { return Login(session, *login_args); }));

  auto logout_registry = std::make_shared<std::string>();
  CLI::App* logout = root.add_subcommand("logout", "Remove a registry's stored credentials");
  logout->add_option("REGISTRY", *logout_registry, "Registry host")->required();
  logout->callback(runner.Wrap([logout_registry](Session&) { return Logout(*logout_registry); }));
}

}  // namespace berth::cli
