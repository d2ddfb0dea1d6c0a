#include "integration/imaged_harness.h"

#include "absl/strings/str_cat.h"
#include "lib/base/digest.h"
#include "lib/base/status_macros.h"
#include "lib/testing/testing.h"

namespace berth::integration {
namespace {

Snapshotd::Options SnapshotdOn(const Contentd& contentd) {
  Snapshotd::Options options;
  options.contentd_address = contentd.address();
  return options;
}

}  // namespace

PullStack::PullStack(const std::string& dir)
    : contentd(dir, Contentd::Options{}),
      snapshotd(dir, SnapshotdOn(contentd)),
      address(dir + "/imaged.sock"),
      imaged(dir),
      dir_(dir) {}

absl::Status PullStack::Start(const std::vector<std::string>& imaged_args) {
  BERTH_RETURN_IF_ERROR(contentd.Start());
  BERTH_RETURN_IF_ERROR(snapshotd.Start());
  return StartImaged(imaged_args);
}

absl::Status PullStack::StartImaged(const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {
      testing::BinaryPath("services/imaged/imaged"), "--root", dir_ + "/imaged-root", "--state",
      dir_ + "/imaged-state", "--address", address, "--contentd-address", contentd.address(),
      "--snapshotd-address", snapshotd.address(), "--log-level", "debug"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return imaged.StartServing("imaged", argv, address);
}

CommandResult PullStack::Berth(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {testing::BinaryPath("tools/berth/berth"), "--imaged-address",
                                   address, "--timeout", "120s"};
  argv.insert(argv.end(), args.begin(), args.end());
  CommandResult result;
  result.output = testing::RunCommand(argv, &result.exit_code);
  return result;
}

std::string TopChainId(const nlohmann::json& config) {
  std::string chain;
  for (const nlohmann::json& diff_id : config["rootfs"]["diff_ids"]) {
    chain = chain.empty()
                ? diff_id.get<std::string>()
                : Sha256Of(absl::StrCat(chain, " ", diff_id.get<std::string>())).ToString();
  }
  return chain;
}

}  // namespace berth::integration
