#pragma once

// What a pull needs, under one test directory: a contentd, a snapshotd (overlayfs) on it and a
// real imaged on both, plus `berth` pointed at that imaged and containerd's ChainID, for the
// pull tests. The registries are the tests' own (harness.h Registry). Stopped by the objects
// that started them, by PID.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "integration/harness.h"
#include "integration/snapshotd_harness.h"

namespace berth::integration {

class PullStack {
 public:
  explicit PullStack(const std::string& dir);
  PullStack(const PullStack&) = delete;
  PullStack& operator=(const PullStack&) = delete;

  // Starts contentd, snapshotd and imaged (with `imaged_args` added to its flags).
  absl::Status Start(const std::vector<std::string>& imaged_args = {});
  // (Re)starts imaged alone, with `extra` added to its flags.
  absl::Status StartImaged(const std::vector<std::string>& extra = {});
  // `berth --imaged-address <imaged> --timeout 120s args...`.
  CommandResult Berth(const std::vector<std::string>& args) const;

  Contentd contentd;
  Snapshotd snapshotd;
  std::string address;  // imaged's socket
  DaemonProcess imaged;

 private:
  std::string dir_;
};

// containerd's ChainID of an image config's rootfs.diff_ids: the name of the top snapshot of
// the image's chain.
std::string TopChainId(const nlohmann::json& config);

}  // namespace berth::integration
