#include "integration/imaged_stack.h"

#include "absl/strings/str_cat.h"
#include "lib/base/digest.h"
#include "lib/base/posix.h"
#include "lib/base/status_macros.h"
#include "lib/testing/testing.h"

namespace berth::integration {

ImagedStack::ImagedStack(const std::string& dir, const std::vector<std::string>& snapshotd_args)
    : contentd(dir, Contentd::Options{}),
      snapshotd(dir,
                [&] {
                  Snapshotd::Options options;
                  options.contentd_address = contentd.address();
                  options.extra_args = snapshotd_args;
                  return options;
                }()),
      address(dir + "/imaged.sock"),
      imaged(dir),
      dir_(dir) {}

absl::Status ImagedStack::StartStores() {
  if (absl::Status st = contentd.Start(); !st.ok()) {
    return absl::UnavailableError(absl::StrCat(st.message(), contentd.ReadLog()));
  }
  if (absl::Status st = snapshotd.Start(); !st.ok()) {
    return absl::UnavailableError(absl::StrCat(st.message(), snapshotd.ReadLog()));
  }
  return absl::OkStatus();
}

absl::Status ImagedStack::Start(const std::vector<std::string>& imaged_args) {
  BERTH_RETURN_IF_ERROR(StartStores());
  return StartImaged(imaged_args);
}

absl::Status ImagedStack::StartImaged(const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {
      testing::BinaryPath("services/imaged/imaged"), "--root", dir_ + "/imaged-root",
      "--state", dir_ + "/imaged-state", "--address", address, "--contentd-address",
      contentd.address(), "--snapshotd-address", snapshotd.address(), "--log-level", "debug"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return imaged.StartServing("imaged", argv, address);
}

CommandResult ImagedStack::Berth(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {testing::BinaryPath("tools/berth/berth"),
                                   "--imaged-address",
                                   address,
                                   "--contentd-address",
                                   contentd.address(),
                                   "--snapshotd-address",
                                   snapshotd.address(),
                                   "--timeout",
                                   "120s"};
  argv.insert(argv.end(), args.begin(), args.end());
  CommandResult result;
  result.output = testing::RunCommand(argv, &result.exit_code);
  return result;
}

Context DefaultNamespace(absl::Duration timeout) {
  Context ctx;
  ctx.ns = "default";
  return ctx.WithTimeout(timeout);
}

absl::Status ImagedStack::ImportBusybox(const std::string& ref) {
  const std::string layout = dir_ + "/busybox-layout";
  const std::string archive = dir_ + "/busybox.tar";
  int code = 0;
  std::string out = testing::RunCommand(
      {testing::SourcePath("integration/scripts/make-busybox-image.sh"), layout}, &code);
  if (code == 0) {
    out = testing::RunCommand({"skopeo", "copy", "oci:" + layout + ":latest",
                               absl::StrCat("oci-archive:", archive, ":", ref)},
                              &code);
  }
  if (code != 0) {
    return absl::InternalError(absl::StrCat("making the busybox image: ", out));
  }
  CommandResult import = Berth({"import", archive});
  if (import.exit_code != 0) {
    return absl::InternalError(absl::StrCat("berth import: ", import.output, imaged.ReadLog()));
  }
  return absl::OkStatus();
}

absl::Status MakeImagesAAndB(const std::string& layout) {
  BERTH_RETURN_IF_ERROR(MakeTestImage(layout, "a"));
  const std::string extra = layout + "-extra";
  BERTH_RETURN_IF_ERROR(WriteFileAtomic(extra, "only in b\n", 0644));
  int code = 0;
  std::string out = testing::RunCommand(
      {"umoci", "insert", "--image", layout + ":a", "--tag", "b", extra, "/extra"}, &code);
  if (code != 0) {
    return absl::InternalError(absl::StrCat("umoci insert: ", out));
  }
  return absl::OkStatus();
}

ImageParts PartsOf(const std::string& layout, const std::string& tag) {
  ImageParts parts;
  nlohmann::json index = nlohmann::json::parse(*ReadFile(layout + "/index.json"));
  for (const nlohmann::json& m : index["manifests"]) {
    if (m["annotations"]["org.opencontainers.image.ref.name"] == tag) {
      parts.manifest = m["digest"];
    }
  }
  nlohmann::json manifest = nlohmann::json::parse(LayoutBlob(layout, parts.manifest));
  parts.config = manifest["config"]["digest"];
  for (const nlohmann::json& layer : manifest["layers"]) {
    parts.layers.push_back(layer["digest"]);
  }
  nlohmann::json config = nlohmann::json::parse(LayoutBlob(layout, parts.config));
  for (const nlohmann::json& diff_id : config["rootfs"]["diff_ids"]) {
    parts.chain.push_back(
        parts.chain.empty()
            ? diff_id.get<std::string>()
            : Sha256Of(absl::StrCat(parts.chain.back(), " ", diff_id.get<std::string>()))
                  .ToString());
  }
  return parts;
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

std::string LayoutBlob(const std::string& layout, const std::string& digest) {
  absl::StatusOr<std::string> data = ReadFile(layout + "/blobs/sha256/" + digest.substr(7));
  return data.ok() ? *data : std::string();
}

}  // namespace berth::integration
