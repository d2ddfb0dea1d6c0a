#include "integration/snapshotd_harness.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "integration/harness.h"

namespace berth::integration {

Snapshotd::Snapshotd(std::string dir, Options options)
    : dir_(std::move(dir)),
      options_(std::move(options)),
      root_(dir_ + "/sd-root"),
      state_(dir_ + "/sd-state"),
      address_(dir_ + "/sd.sock") {}

Snapshotd::~Snapshotd() = default;

absl::Status Snapshotd::Start() {
  if (running()) {
    return absl::OkStatus();
  }
  if (process_ != nullptr) {
    old_logs_.push_back(process_->log_path());
    process_.reset();
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
  process_ = std::make_unique<testing::Process>(argv, dir_);
  bool ready = testing::WaitFor(
      [&] {
        return process_->TryReap() || testing::WaitForUnixSocket(address_, absl::ZeroDuration());
      },
      absl::Seconds(20));
  if (!ready || !process_->running()) {
    return absl::UnavailableError(absl::StrCat("snapshotd (", absl::StrJoin(argv, " "),
                                               ") did not come up; log:\n", ReadLog()));
  }
  return absl::OkStatus();
}

void Snapshotd::Kill() {
  if (process_ != nullptr) {
    process_->Kill();
  }
}

int Snapshotd::Stop() { return running() ? process_->Terminate(absl::Seconds(30)) : 0; }

std::string Snapshotd::ReadLog() const {
  std::string out;
  for (const std::string& path : old_logs_) {
    absl::StatusOr<std::string> text = ReadFile(path);
    if (text.ok()) {
      absl::StrAppend(&out, "----- ", path, "\n", *text);
    }
  }
  if (process_ != nullptr) {
    absl::StrAppend(&out, "----- ", process_->log_path(), "\n", process_->ReadLog());
  }
  return out;
}

}  // namespace berth::integration
