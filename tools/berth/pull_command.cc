// `berth pull REF`: imaged's berth.distribution.v1.Distribution.Pull, drawn as a live
// progress bar per blob on a terminal, else one line per blob state change ("DIGEST STATE
// SIZE"), then "pulled NAME DIGEST". With --json, one JSON object a line per message
// (tools/berth/progress.h).

#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "berth/distribution/v1/distribution.grpc.pb.h"
#include "lib/base/grpc_status.h"
#include "tools/berth/commands.h"
#include "tools/berth/progress.h"
#include "tools/berth/registry_commands.h"

namespace berth::cli {
namespace {

namespace pb = ::berth::distribution::v1;

constexpr absl::string_view kDaemon = "imaged";

struct PullArgs {
  std::string reference;
  std::string platform;
  bool all_platforms = false;
  bool no_unpack = false;
  std::string snapshotter;
  std::vector<std::string> insecure_registries;
};

absl::Status Pull(Session& session, const PullArgs& args) {
  pb::PullRequest request;
  request.set_reference(args.reference);
  request.set_platform(args.platform);
  request.set_all_platforms(args.all_platforms);
  request.set_unpack(!args.no_unpack);
  request.set_snapshotter(args.snapshotter);
  for (const std::string& host : args.insecure_registries) {
    request.add_plain_http_hosts(host);
  }
  if (absl::Status st = AddCredentials(args.reference, request.mutable_auths()); !st.ok()) {
    return st;
  }
  auto stub = pb::Distribution::NewStub(session.Channel(kDaemon));
  grpc::ClientContext context;
  session.Prepare(&context);
  std::unique_ptr<grpc::ClientReader<pb::PullProgress>> reader = stub->Pull(&context, request);
  pb::PulledImage image;
  ReadProgress<pb::PullProgress>(*reader, session.json(), [&](const pb::PullProgress& message) {
    if (message.has_image()) {
      image = message.image();
    }
  });
  absl::Status status = FromGrpcStatus(reader->Finish());
  if (!status.ok()) {
    return session.Explain(kDaemon, status);
  }
  PrintImage(session.json(), "pulled", image);
  return absl::OkStatus();
}

}  // namespace

void RegisterPullCommand(CLI::App& root, Runner& runner) {
  auto args = std::make_shared<PullArgs>();
  CLI::App* pull = root.add_subcommand(
      "pull", "Pull an image through imaged into contentd and snapshotd, one line per change");
  pull->add_option("REF", args->reference, "Image reference (e.g. 127.0.0.1:5000/test/hello)")
      ->required();
  pull->add_option("--platform", args->platform, "os/arch[/variant] (default: this host)");
  pull->add_flag("--all-platforms", args->all_platforms,
                 "Fetch every platform of an index (only --platform's is unpacked)");
  pull->add_flag("--no-unpack", args->no_unpack, "Store the blobs only; make no snapshots");
  pull->add_option("--snapshotter", args->snapshotter, "Snapshotter to unpack into");
  pull->add_option("--insecure-registry", args->insecure_registries,
                   "Registry host (HOST[:PORT]) reached over plain HTTP; repeatable")
      ->allow_extra_args(false)  // one host per flag: REF may follow
      ->take_all();
  pull->callback(runner.Wrap([args](Session& session) { return Pull(session, *args); }));
}

}  // namespace berth::cli
