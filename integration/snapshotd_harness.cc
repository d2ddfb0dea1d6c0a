#include "integration/snapshotd_harness.h"

#include <utility>

namespace berth::integration {

Snapshotd::Snapshotd(std::string dir, Options options)
    : dir_(std::move(dir)),
      options_(std::move(options)),
      root_(dir_ + "/sd-root"),
      state_(dir_ + "/sd-state"),
      address_(dir_ + "/sd.sock"),
      process_(dir_) {}

Snapshotd::~Snapshotd() = default;

absl::Status Snapshotd::Start() {
  if (running()) {
    return absl::OkStatus();
  }
  std::string contentd = options_.contentd_address.empty() ? dir_ + "/no-contentd.sock"
                                                           : options_.contentd_address;
  std::vector<std::string> argv = {testing::BinaryPath("services/snapshotd/snapshotd"),
                                    "--root",
                                    root_,
                                    "--state",
                                    state_,
                                    "--address",
                                    address_,
                                    "--contentd-address",
                                    contentd,
                                    "--snapshotter",
                                    options_.snapshotter,
                                    "--default-namespace",
                                    options_.default_namespace,
                                    "--log-level",
                                    options_.log_level};
  argv.insert(argv.end(), options_.extra_args.begin(), options_.extra_args.end());
  if (!options_.env.empty()) {
    argv.insert(argv.begin(), options_.env.begin(), options_.env.end());
    argv.insert(argv.begin(), "env");  // env(1) execs the daemon: the pid stays its own
  }
  return process_.StartServing("snapshotd", argv, address_);
}

void Snapshotd::Kill() { process_.Kill(); }

int Snapshotd::Stop() { return process_.Stop(absl::Seconds(30)); }

}  // namespace berth::integration
