#include "tools/berth/cli.h"

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <set>

#include <thread>

#include <CLI/CLI.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "lib/base/grpc_client.h"
#include "lib/base/identifiers.h"
#include "tools/berth/output.h"

namespace berth::cli {
namespace {

constexpr absl::string_view kUsagePayload = "type.berth.dev/cli.UsageError";

}  // namespace

void AddGlobalOptions(CLI::App& app, GlobalOptions& options) {
  for (const char* daemon : kDaemons) {
    std::string& address = options.addresses[daemon];
    address = absl::StrCat("/run/berth/", daemon, ".sock");
    app.add_option(absl::StrCat("--", daemon, "-address"), address,
                   absl::StrCat("Address of ", daemon, " (a unix socket path or a gRPC target)"))
        ->envname(absl::StrCat("BERTH_", absl::AsciiStrToUpper(daemon), "_ADDRESS"))
        ->capture_default_str()
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)
        ->group("Daemons");
  }
  app.add_option("-n,--namespace", options.ns, "Namespace to act in")
      ->envname("BERTH_NAMESPACE")
      ->capture_default_str()
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_flag("--json", options.json, "Machine-readable output (JSON on stdout)");
  app.add_option("--timeout", options.timeout,
                 "Deadline for the whole command, e.g. 30s or 2m (0: none)")
      ->capture_default_str()
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
}

absl::StatusOr<std::unique_ptr<Session>> Session::Create(const GlobalOptions& options) {
  if (absl::Status status = ValidateNamespace(options.ns); !status.ok()) {
    return UsageError(status.message());
  }
  absl::StatusOr<absl::Duration> timeout = ParseDurationArg("--timeout", options.timeout);
  if (!timeout.ok()) {
    return timeout.status();
  }
  std::unique_ptr<Session> session(new Session());
  for (const auto& [daemon, address] : options.addresses) {
    session->addresses_.emplace(daemon, address);
  }
  session->ns_ = options.ns;
  session->json_ = options.json;
  session->timeout_ = *timeout;
  if (*timeout > absl::ZeroDuration()) {
    session->deadline_ = absl::Now() + *timeout;
  }
  return session;
}

const std::string& Session::Address(absl::string_view daemon) const {
  auto it = addresses_.find(daemon);
  // Every daemon in kDaemons gets an address in AddGlobalOptions; anything else is our bug.
  if (it == addresses_.end()) {
    std::fprintf(stderr, "berth: internal error: no address for daemon %s\n",
                 std::string(daemon).c_str());
    std::abort();
  }
  return it->second;
}

std::shared_ptr<grpc::Channel> Session::Channel(absl::string_view daemon) {
  auto it = channels_.find(daemon);
  if (it == channels_.end()) {
    it = channels_.emplace(std::string(daemon), Dial(Address(daemon))).first;
  }
  return it->second;
}

void Session::Prepare(grpc::ClientContext* client_context, absl::Duration fallback) const {
  Context ctx = context();
  if (ctx.deadline == absl::InfiniteFuture() && fallback > absl::ZeroDuration()) {
    ctx.deadline = absl::Now() + fallback;
  }
  ApplyContext(ctx, client_context);
}

absl::Status Session::Explain(absl::string_view daemon, const absl::Status& status) {
  if (status.ok()) {
    return status;
  }
  const std::string& address = Address(daemon);
  switch (status.code()) {
    case absl::StatusCode::kUnavailable: {
      // Unavailable also means "ref is locked" from a daemon we did reach; only a channel that
      // is not connected means the daemon is not there.
      auto it = channels_.find(daemon);
      if (it == channels_.end() || it->second->GetState(false) != GRPC_CHANNEL_READY) {
        return absl::UnavailableError(
            absl::StrCat("cannot reach ", daemon, " at ", address, ": ", status.message()));
      }
      return status;
    }
    case absl::StatusCode::kDeadlineExceeded:
      return absl::DeadlineExceededError(
          absl::StrCat(daemon, " at ", address, " did not answer in time (--timeout ",
                       absl::FormatDuration(timeout_), "): ", status.message()));
    case absl::StatusCode::kUnimplemented:
      return absl::UnimplementedError(absl::StrCat(
          daemon, " at ", address, " does not implement this call: ", status.message()));
    case absl::StatusCode::kPermissionDenied:
      return absl::PermissionDeniedError(
          absl::StrCat("permission denied by ", daemon, ": ", status.message()));
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kDataLoss:
      return absl::Status(status.code(), absl::StrCat(daemon, " failed: ", status.message()));
    default:
      // NotFound, AlreadyExists, InvalidArgument, FailedPrecondition...: the daemon's message
      // names the thing already ("content sha256:...: not found").
      return status;
  }
}

std::function<void()> Runner::Wrap(std::function<absl::Status(Session&)> body) {
  return [this, body = std::move(body)]() {
    absl::StatusOr<std::unique_ptr<Session>> session = Session::Create(options_);
    if (!session.ok()) {
      status_ = session.status();
      return;
    }
    status_ = body(**session);
    exit_code_ = (*session)->exit_code();
  };
}

namespace {
std::vector<std::string>& Trailing() {
  static auto* trailing = new std::vector<std::string>();
  return *trailing;
}

// Whether option `token` ("-v", "--volume=x") of `app` (or of its parents) takes a value that
// follows as the next argument.
bool TakesNextValue(const CLI::App* app, const std::string& token) {
  if (token.find('=') != std::string::npos) {
    return false;
  }
  for (; app != nullptr; app = app->get_parent()) {
    const CLI::Option* option = app->get_option_no_throw(token);
    if (option != nullptr) {
      return option->get_items_expected_min() > 0;
    }
  }
  return false;
}
}  // namespace

void SplitTrailingCommand(CLI::App& root, std::vector<std::string>* args) {
  static const std::set<std::string> kCommands = {"run", "create", "exec"};
  const CLI::App* command = &root;
  size_t i = 0;
  for (; i < args->size(); ++i) {
    const std::string& token = (*args)[i];
    if (!token.empty() && token[0] == '-') {
      if (TakesNextValue(command, token)) {
        ++i;
      }
      continue;
    }
    if (command != &root) {
      break;  // the command's positional: what follows is the container's command
    }
    if (kCommands.count(token) == 0) {
      return;
    }
    command = root.get_subcommand(token);
  }
  if (command == &root || i >= args->size()) {
    return;
  }
  Trailing().assign(args->begin() + static_cast<std::ptrdiff_t>(i) + 1, args->end());
  args->resize(i + 1);
}

const std::vector<std::string>& TrailingCommand() { return Trailing(); }

absl::Status UsageError(absl::string_view message) {
  absl::Status status = absl::InvalidArgumentError(message);
  status.SetPayload(kUsagePayload, absl::Cord("1"));
  return status;
}

bool IsUsageError(const absl::Status& status) {
  return status.GetPayload(kUsagePayload).has_value();
}

absl::StatusOr<std::pair<std::string, std::string>> ParseLabel(absl::string_view text,
                                                               bool allow_empty_value) {
  size_t eq = text.find('=');
  if (eq == absl::string_view::npos || eq == 0) {
    return UsageError(absl::StrCat("label \"", text, "\": want key=value"));
  }
  std::pair<std::string, std::string> label(std::string(text.substr(0, eq)),
                                            std::string(text.substr(eq + 1)));
  if (!allow_empty_value && label.second.empty()) {
    return UsageError(absl::StrCat("label \"", text, "\": empty value"));
  }
  return label;
}

absl::StatusOr<std::map<std::string, std::string>> ParseLabels(
    const std::vector<std::string>& texts) {
  std::map<std::string, std::string> labels;
  for (const std::string& text : texts) {
    absl::StatusOr<std::pair<std::string, std::string>> label = ParseLabel(text, false);
    if (!label.ok()) {
      return label.status();
    }
    labels[label->first] = label->second;
  }
  return labels;
}

absl::StatusOr<Digest> ParseDigestArg(absl::string_view text) {
  absl::StatusOr<Digest> digest = Digest::Parse(text);
  if (!digest.ok()) {
    return UsageError(digest.status().message());
  }
  return digest;
}

absl::StatusOr<absl::Duration> ParseDurationArg(absl::string_view what, absl::string_view text) {
  absl::Duration duration;
  if (!absl::ParseDuration(text, &duration) || duration < absl::ZeroDuration() ||
      duration == absl::InfiniteDuration()) {
    return UsageError(
        absl::StrCat(what, " \"", text, "\": want a duration such as 30s, 5m or 1h30m"));
  }
  return duration;
}

absl::Status RemoveEach(Session& session, absl::string_view daemon,
                        const std::vector<std::string>& names,
                        const std::function<absl::Status(const std::string&)>& remove) {
  absl::Status first_error;
  std::vector<std::string> removed;
  for (const std::string& name : names) {
    absl::Status status = session.Explain(daemon, remove(name));
    if (status.code() == absl::StatusCode::kUnavailable ||
        status.code() == absl::StatusCode::kDeadlineExceeded) {
      return status;
    }
    if (!status.ok()) {
      if (first_error.ok()) {
        first_error = status;
      } else {
        std::cerr << "berth: " << status.message() << '\n';
      }
      continue;
    }
    removed.push_back(name);
  }
  PrintNames(session, removed);
  return first_error;
}

void PrintNames(const Session& session, const std::vector<std::string>& names) {
  if (session.json()) {
    PrintJson(std::cout, names);
  } else {
    for (const std::string& name : names) {
      std::cout << name << '\n';
    }
  }
}

}  // namespace berth::cli
