#pragma once

// imaged with the stores it writes to, for the image tests (pull, import, export): a contentd,
// a snapshotd on it and an imaged on both, under one test directory, plus the berth CLI pointed
// at that imaged. Each daemon is stopped by the object that started it (by PID).

#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "lib/base/context.h"
#include "integration/harness.h"
#include "integration/snapshotd_harness.h"

namespace berth::integration {

class ImagedStack {
 public:
  // `snapshotd_args`: more flags for snapshotd (e.g. --metrics-address).
  explicit ImagedStack(const std::string& dir,
                       const std::vector<std::string>& snapshotd_args = {});
  ImagedStack(const ImagedStack&) = delete;
  ImagedStack& operator=(const ImagedStack&) = delete;

  // Starts contentd, then snapshotd; errors carry the daemon's log.
  absl::Status StartStores();
  // StartStores, then StartImaged(imaged_args).
  absl::Status Start(const std::vector<std::string>& imaged_args = {});
  // Starts imaged (again, after a Kill) with `extra` flags; waits for its socket.
  absl::Status StartImaged(const std::vector<std::string>& extra = {});
  // Runs `berth --imaged-address ... --contentd-address ... --snapshotd-address ...
  // --timeout 120s args...`.
  CommandResult Berth(const std::vector<std::string>& args) const;
  // Makes the busybox test image (integration/scripts/make-busybox-image.sh: sh and the usual
  // applets, Cmd sh), turns it into an oci-archive named `ref` (skopeo) and `berth import`s it:
  // the record docker.io/<ref>, its blobs on contentd and its snapshot chain on snapshotd.
  absl::Status ImportBusybox(const std::string& ref);

  Contentd contentd;
  Snapshotd snapshotd;
  const std::string address;  // imaged's socket
  DaemonProcess imaged;

 private:
  std::string dir_;
};

// A test fixture with an ImagedStack in a temporary directory (started by the test), its parts
// under the names the image tests use.
class ImagedStackTest : public ::testing::Test {
 protected:
  explicit ImagedStackTest(const std::vector<std::string>& snapshotd_args = {})
      : stack_(dir_.path(), snapshotd_args) {}

  testing::TempDir dir_;
  ImagedStack stack_;
  Contentd& contentd_ = stack_.contentd;
  Snapshotd& snapshotd_ = stack_.snapshotd;
  const std::string& address_ = stack_.address;
  DaemonProcess& imaged_ = stack_.imaged;
};

// A call's Context in namespace "default" (where the image tests' berth commands work), its
// deadline `timeout` from now.
Context DefaultNamespace(absl::Duration timeout = absl::Seconds(60));

// The test image (MakeTestImage) in the OCI layout `layout` as tag "a", and as "b": "a" plus a
// layer of its own (/extra, umoci insert).
absl::Status MakeImagesAAndB(const std::string& layout);

// One tag of a test layout: its documents, layers and snapshot chain (containerd's ChainIDs).
struct ImageParts {
  std::string manifest;
  std::string config;
  std::vector<std::string> layers;
  std::vector<std::string> chain;
  std::set<std::string> Blobs() const {
    std::set<std::string> blobs(layers.begin(), layers.end());
    blobs.insert(manifest);
    blobs.insert(config);
    return blobs;
  }
};
// The parts of `tag` (its org.opencontainers.image.ref.name) in the OCI layout `layout`.
ImageParts PartsOf(const std::string& layout, const std::string& tag);

// containerd's ChainID of an image config's rootfs.diff_ids, computed here.
std::string TopChainId(const nlohmann::json& config);

// The blob `digest` of the OCI layout directory `layout`; empty when it cannot be read.
std::string LayoutBlob(const std::string& layout, const std::string& digest);

}  // namespace berth::integration
