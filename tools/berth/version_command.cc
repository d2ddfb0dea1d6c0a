// `berth version`: the CLI's version and each daemon's containerd.services.version.v1.Version.
// A daemon that does not answer is listed as unreachable; that is not an error (exit 0).

#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include "containerd/services/version/v1/version.grpc.pb.h"
#include "google/protobuf/empty.pb.h"
#include "lib/base/grpc_status.h"
#include "tools/berth/commands.h"
#include "tools/berth/output.h"

namespace berth::cli {
namespace {

namespace pb = ::containerd::services::version::v1;

// Without --timeout, how long one daemon gets to answer. A missing socket fails at once; this
// bounds a daemon that accepts but hangs.
constexpr absl::Duration kDefaultVersionTimeout = absl::Seconds(5);

absl::Status Version(Session& session) {
  nlohmann::json daemons = nlohmann::json::array();
  std::cout << (session.json() ? "" : "Client:\n  Version:  " BERTH_VERSION "\n");
  for (const char* daemon : kDaemons) {
    auto stub = pb::Version::NewStub(session.Channel(daemon));
    grpc::ClientContext context;
    session.Prepare(&context, kDefaultVersionTimeout);
    pb::VersionResponse response;
    absl::Status status =
        FromGrpcStatus(stub->Version(&context, google::protobuf::Empty(), &response));
    status = session.Explain(daemon, status);
    nlohmann::json entry = {{"name", daemon}, {"address", session.Address(daemon)}};
    if (status.ok()) {
      entry["version"] = response.version();
      entry["revision"] = response.revision();
    } else {
      entry["error"] = std::string(status.message());
    }
    daemons.push_back(entry);
    if (session.json()) {
      continue;
    }
    std::cout << '\n' << daemon << " (" << session.Address(daemon) << "):\n";
    if (status.ok()) {
      std::cout << "  Version:  " << response.version()
                << "\n  Revision: " << (response.revision().empty() ? "-" : response.revision())
                << '\n';
    } else if (status.code() == absl::StatusCode::kUnavailable) {
      std::cout << "  unreachable: " << status.message() << '\n';
    } else {
      std::cout << "  error: " << status.message() << '\n';
    }
  }
  if (session.json()) {
    PrintJson(std::cout, {{"client", {{"version", BERTH_VERSION}}}, {"daemons", daemons}});
  }
  return absl::OkStatus();
}

}  // namespace

void RegisterVersionCommand(CLI::App& root, Runner& runner) {
  CLI::App* version =
      root.add_subcommand("version", "Print the version of berth and of every daemon");
  version->callback(runner.Wrap(Version));
}

}  // namespace berth::cli
