#include "services/execd/shim_client.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "lib/base/posix.h"
#include "lib/base/status_macros.h"
#include "lib/base/unique_fd.h"
#include "services/execd/shim/protocol.h"

namespace berth::execd {
namespace {

absl::Status StatusOfKind(const std::string& kind, const std::string& message) {
  if (kind == "notfound") return absl::NotFoundError(message);
  if (kind == "exists") return absl::AlreadyExistsError(message);
  if (kind == "invalid") return absl::InvalidArgumentError(message);
  return absl::FailedPreconditionError(message);
}

// "ok F..." -> F...; "err KIND MESSAGE" -> the status.
absl::StatusOr<std::vector<std::string>> ParseAnswer(const std::string& line,
                                                     absl::string_view what) {
  std::vector<std::string> fields;
  if (!shim::DecodeLine(std::string(absl::StripSuffix(line, "\n")), &fields) || fields.empty()) {
    return absl::InternalError(absl::StrCat(what, ": unreadable answer from the shim: ", line));
  }
  if (fields[0] == "ok") {
    fields.erase(fields.begin());
    return fields;
  }
  if (fields[0] == "err" && fields.size() >= 3) {
    return StatusOfKind(fields[1], fields[2]);
  }
  return absl::InternalError(absl::StrCat(what, ": unreadable answer from the shim: ", line));
}

absl::StatusOr<int64_t> Number(const std::vector<std::string>& fields, size_t i) {
  int64_t n = 0;
  if (i >= fields.size() || !absl::SimpleAtoi(fields[i], &n)) {
    return absl::InternalError("the shim's answer is missing a number");
  }
  return n;
}

ProcessExit ExitOf(int64_t status, int64_t exited_at_ns) {
  return {static_cast<uint32_t>(status), absl::FromUnixNanos(exited_at_ns)};
}

}  // namespace

absl::StatusOr<pid_t> LaunchShim(const ShimLaunch& l) {
  std::vector<std::string> argv = {l.shim_binary, "--id", l.id, "--bundle", l.bundle,
                                   "--state", l.state_dir, "--runtime", l.runtime,
                                   "--runtime-root", l.runtime_root};
  for (const auto& [flag, value] : {std::pair<const char*, const std::string*>{"--stdin", &l.stdin_path},
                                    {"--stdout", &l.stdout_path},
                                    {"--stderr", &l.stderr_path}}) {
    if (!value->empty()) {
      argv.insert(argv.end(), {flag, *value});
    }
  }
  if (l.terminal) {
    argv.push_back("--terminal");
  }
  BERTH_ASSIGN_OR_RETURN(std::string answer, RunProgram(argv, nullptr));
  BERTH_ASSIGN_OR_RETURN(std::vector<std::string> fields,
                         ParseAnswer(answer, absl::StrCat("create ", l.id)));
  BERTH_ASSIGN_OR_RETURN(int64_t init_pid, Number(fields, 0));
  return static_cast<pid_t>(init_pid);
}

std::optional<ProcessExit> ReadExitRecord(const std::string& state_dir,
                                          const std::string& exec_id) {
  absl::StatusOr<std::string> text =
      ReadFile(absl::StrCat(state_dir, "/", exec_id.empty() ? "exit" : "exit-" + exec_id));
  if (!text.ok()) {
    return std::nullopt;
  }
  std::vector<std::string> fields = absl::StrSplit(absl::StripAsciiWhitespace(*text), ' ');
  int64_t status = 0, at = 0;
  if (fields.size() < 2 || !absl::SimpleAtoi(fields[0], &status) ||
      !absl::SimpleAtoi(fields[1], &at)) {
    return std::nullopt;
  }
  return ExitOf(status, at);
}

absl::StatusOr<std::vector<std::string>> ShimClient::Call(const Context& ctx,
                                                          const std::vector<std::string>& request) {
  const std::string what = absl::StrCat("shim ", state_dir_, ": ", request[0]);
  // The socket is reached through the directory's fd, so a long state path still fits.
  UniqueFd dir(::open(state_dir_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid()) {
    return absl::UnavailableError(absl::StrCat(what, ": the shim's directory is gone"));
  }
  std::string path = absl::StrCat("/proc/self/fd/", dir.get(), "/control.sock");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid() || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return absl::UnavailableError(
        absl::StrCat(what, ": the shim is not running (", strerror(errno), ")"));
  }
  std::string line = shim::EncodeLine(request);
  if (::send(fd.get(), line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size())) {
    return absl::UnavailableError(absl::StrCat(what, ": ", strerror(errno)));
  }
  std::string answer;
  char buf[4096];
  while (answer.find('\n') == std::string::npos) {
    BERTH_RETURN_IF_ERROR(ctx.Alive());
    pollfd p{fd.get(), POLLIN, 0};
    int rc = ::poll(&p, 1, 200);
    if (rc <= 0) {
      continue;
    }
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return absl::UnavailableError(absl::StrCat(what, ": the shim closed the connection"));
    }
    answer.append(buf, n);
  }
  return ParseAnswer(answer.substr(0, answer.find('\n')), what);
}

absl::StatusOr<pid_t> ShimClient::Start(const Context& ctx) {
  BERTH_ASSIGN_OR_RETURN(std::vector<std::string> f, Call(ctx, {"start"}));
  BERTH_ASSIGN_OR_RETURN(int64_t pid, Number(f, 0));
  return static_cast<pid_t>(pid);
}

absl::StatusOr<pid_t> ShimClient::Exec(const Context& ctx, const std::string& exec_id,
                                       const std::string& spec_path, bool terminal,
                                       const std::string& stdin_path,
                                       const std::string& stdout_path,
                                       const std::string& stderr_path) {
  BERTH_ASSIGN_OR_RETURN(std::vector<std::string> f,
                         Call(ctx, {"exec", exec_id, spec_path, terminal ? "1" : "0", stdin_path,
                                    stdout_path, stderr_path}));
  BERTH_ASSIGN_OR_RETURN(int64_t pid, Number(f, 0));
  return static_cast<pid_t>(pid);
}

absl::StatusOr<ProcessState> ShimClient::State(const Context& ctx, const std::string& exec_id) {
  BERTH_ASSIGN_OR_RETURN(std::vector<std::string> f, Call(ctx, {"state", exec_id}));
  ProcessState state;
  BERTH_ASSIGN_OR_RETURN(int64_t pid, Number(f, 0));
  BERTH_ASSIGN_OR_RETURN(int64_t status, Number(f, 2));
  BERTH_ASSIGN_OR_RETURN(int64_t at, Number(f, 3));
  state.pid = static_cast<pid_t>(pid);
  state.status = f[1];
  state.exit = ExitOf(status, at);
  return state;
}

absl::StatusOr<ProcessExit> ShimClient::Wait(const Context& ctx, const std::string& exec_id) {
  BERTH_ASSIGN_OR_RETURN(std::vector<std::string> f, Call(ctx, {"wait", exec_id}));
  BERTH_ASSIGN_OR_RETURN(int64_t status, Number(f, 0));
  BERTH_ASSIGN_OR_RETURN(int64_t at, Number(f, 1));
  return ExitOf(status, at);
}

absl::Status ShimClient::Kill(const Context& ctx, const std::string& exec_id, int signal,
                              bool all) {
  return Call(ctx, {"kill", exec_id, std::to_string(signal), all ? "1" : "0"}).status();
}

absl::Status ShimClient::Resize(const Context& ctx, const std::string& exec_id, uint32_t width,
                                uint32_t height) {
  return Call(ctx, {"resize", exec_id, std::to_string(width), std::to_string(height)}).status();
}

absl::Status ShimClient::CloseStdin(const Context& ctx, const std::string& exec_id) {
  return Call(ctx, {"closeio", exec_id}).status();
}

absl::Status ShimClient::Pause(const Context& ctx) { return Call(ctx, {"pause"}).status(); }

absl::Status ShimClient::Resume(const Context& ctx) { return Call(ctx, {"resume"}).status(); }

absl::StatusOr<std::vector<uint32_t>> ShimClient::Pids(const Context& ctx) {
  BERTH_ASSIGN_OR_RETURN(std::vector<std::string> f, Call(ctx, {"pids"}));
  std::vector<uint32_t> pids;
  for (size_t i = 0; i < f.size(); ++i) {
    BERTH_ASSIGN_OR_RETURN(int64_t pid, Number(f, i));
    pids.push_back(static_cast<uint32_t>(pid));
  }
  return pids;
}

absl::Status ShimClient::Update(const Context& ctx, const std::string& resources_path) {
  return Call(ctx, {"update", resources_path}).status();
}

absl::Status ShimClient::Delete(const Context& ctx, const std::string& exec_id) {
  return Call(ctx, {"delete", exec_id}).status();
}

}  // namespace berth::execd
