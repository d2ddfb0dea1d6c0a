#pragma once

// What every berth command shares: the global options, a Session that reaches the daemons, how
// errors become the one line printed after "berth: ", and parsing of common arguments.

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lib/base/context.h"
#include "lib/base/digest.h"

namespace CLI {
class App;
}

namespace berth::cli {

// The daemons berth can reach, in the order `berth version` lists them. Each gets a global
// option --<daemon>-address, the environment variable BERTH_<DAEMON>_ADDRESS and the default
// /run/berth/<daemon>.sock.
inline constexpr const char* kDaemons[] = {"contentd", "snapshotd", "imaged", "execd", "eventd"};

struct GlobalOptions {
  std::map<std::string, std::string> addresses;  // daemon name -> address
  std::string ns = "default";
  bool json = false;
  std::string timeout = "0";  // a Go-style duration ("10s", "1m30s"); 0: no deadline
};

// Registers the global options on the root command. `options` must outlive `app`.
void AddGlobalOptions(CLI::App& app, GlobalOptions& options);

// One invocation's connections to the daemons. Channels are dialed lazily and reused.
// Not thread-safe.
class Session {
 public:
  // InvalidArgument (a usage error) for a malformed namespace or timeout.
  static absl::StatusOr<std::unique_ptr<Session>> Create(const GlobalOptions& options);

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  bool json() const { return json_; }
  const std::string& ns() const { return ns_; }
  // The namespace (no lease) and the command's deadline every store call carries; the daemons
  // see the deadline too and stop their part of the work when it passes.
  Context context() const {
    Context ctx;
    ctx.ns = ns_;
    ctx.deadline = deadline_;
    return ctx;
  }
  const std::string& Address(absl::string_view daemon) const;
  std::shared_ptr<grpc::Channel> Channel(absl::string_view daemon);

  // For direct stub calls: the namespace header and the deadline. `fallback` is used when the
  // user set no --timeout (zero: none).
  void Prepare(grpc::ClientContext* client_context,
               absl::Duration fallback = absl::ZeroDuration()) const;
  // The command's deadline; absl::InfiniteFuture() when there is none.
  absl::Time deadline() const { return deadline_; }
  absl::Duration timeout() const { return timeout_; }

  // Adds who failed to a failed call's status, keeping its code: Unavailable on a channel that
  // never connected becomes "cannot reach contentd at /run/berth/contentd.sock: ...",
  // DeadlineExceeded names the timeout, Unimplemented names the daemon. Ok stays ok.
  absl::Status Explain(absl::string_view daemon, const absl::Status& status);

  // The exit code berth ends with when the command succeeded (`berth run` passes the
  // container's on); 0 by default.
  void set_exit_code(int code) { exit_code_ = code; }
  int exit_code() const { return exit_code_; }

 private:
  Session() = default;

  std::map<std::string, std::string, std::less<>> addresses_;
  std::map<std::string, std::shared_ptr<grpc::Channel>, std::less<>> channels_;
  std::string ns_;
  bool json_ = false;
  absl::Duration timeout_ = absl::ZeroDuration();
  absl::Time deadline_ = absl::InfiniteFuture();
  int exit_code_ = 0;
};

// Turns command bodies into CLI11 callbacks. The body runs with a Session made from the
// global options as they stand after parsing (flags over environment over defaults); its
// status is kept for main to report. Not thread-safe.
class Runner {
 public:
  explicit Runner(const GlobalOptions& options) : options_(options) {}
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  std::function<void()> Wrap(std::function<absl::Status(Session&)> body);
  const absl::Status& status() const { return status_; }
  // The successful command's exit code (Session::set_exit_code).
  int exit_code() const { return exit_code_; }

 private:
  const GlobalOptions& options_;
  absl::Status status_;
  int exit_code_ = 0;
};

// Commands whose last positional starts a command line of the container's own (`berth run
// IMAGE CMD...`, `create`, `exec ID CMD...`): everything after that positional, flags included,
// is the container's. CLI11 would parse those flags as berth's, so main cuts them off `args`
// (the arguments without the program name) before parsing and keeps them here.
// Global and the command's own options before the positional are left in `args`; an option's
// value is recognised by asking `root` which options take one. Not thread-safe.
void SplitTrailingCommand(CLI::App& root, std::vector<std::string>* args);
// What SplitTrailingCommand cut off (empty when it cut nothing).
const std::vector<std::string>& TrailingCommand();

// A usage error: printed like any error, but berth exits 2.
absl::Status UsageError(absl::string_view message);

// Removes each of `names` with `remove`, going on past failures: each failure after the first
// is reported on stderr and the first is returned, except that an unreachable or timed-out
// `daemon` stops at once. Prints the names removed, one a line (a JSON list with --json).
absl::Status RemoveEach(Session& session, absl::string_view daemon,
                        const std::vector<std::string>& names,
                        const std::function<absl::Status(const std::string&)>& remove);
// `names` one a line, or as a JSON list with --json.
void PrintNames(const Session& session, const std::vector<std::string>& names);
bool IsUsageError(const absl::Status& status);

// "key=value" -> (key, value). A missing '=' or an empty key is a usage error.
// With allow_empty_value false, "key=" is a usage error too.
absl::StatusOr<std::pair<std::string, std::string>> ParseLabel(absl::string_view text,
                                                               bool allow_empty_value = true);
// Every "key=value" of `texts`, later keys overriding earlier ones; values must not be empty.
absl::StatusOr<std::map<std::string, std::string>> ParseLabels(
    const std::vector<std::string>& texts);
// A digest argument; malformed is a usage error.
absl::StatusOr<Digest> ParseDigestArg(absl::string_view text);
// A Go-style duration ("90s", "1h30m", "0"); negative or malformed is a usage error.
absl::StatusOr<absl::Duration> ParseDurationArg(absl::string_view what, absl::string_view text);

}  // namespace berth::cli
