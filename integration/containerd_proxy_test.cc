// A real containerd uses contentd as its content store through `proxy_plugins` (type "content"):
// `ctr images pull` against containerd lands every blob of the image in contentd.
//
// Baseline first: the same pull into a containerd with its own local content store, so that a
// failure of the proxy case points at contentd and not at the registry, the image or containerd.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "integration/harness.h"
#include "lib/testing/testing.h"
#include "nlohmann/json.hpp"

namespace berth::integration {
namespace {

using ::berth::testing::TempDir;

constexpr char kImageName[] = "test/hello";
constexpr char kTag[] = "latest";
// Proxy clients send no namespace header: contentd serves them in its default namespace.
constexpr char kContentdDefaultNamespace[] = "containerd-proxy";

// Every digest of the image in the OCI layout: the index's manifests, their config and layers.
std::set<std::string> ImageDigests(const std::string& layout) {
  std::set<std::string> out;
  absl::StatusOr<std::string> index_text = ReadFile(layout + "/index.json");
  if (!index_text.ok()) {
    ADD_FAILURE() << index_text.status();
    return out;
  }
  nlohmann::json index = nlohmann::json::parse(*index_text);
  for (const auto& desc : index["manifests"]) {
    std::string digest = desc["digest"];
    out.insert(digest);
    std::string hex(absl::StripPrefix(digest, "sha256:"));
    absl::StatusOr<std::string> manifest_text = ReadFile(layout + "/blobs/sha256/" + hex);
    if (!manifest_text.ok()) {
      ADD_FAILURE() << manifest_text.status();
      continue;
    }
    nlohmann::json manifest = nlohmann::json::parse(*manifest_text);
    out.insert(manifest["config"]["digest"].get<std::string>());
    for (const auto& layer : manifest["layers"]) {
      out.insert(layer["digest"].get<std::string>());
    }
  }
  return out;
}

// The rows of `ctr plugins ls` as (TYPE, ID, STATUS), header skipped.
struct PluginRow {
  std::string type, id, status;
};
std::vector<PluginRow> PluginRows(const std::string& ls_output) {
  std::vector<PluginRow> rows;
  for (absl::string_view line : absl::StrSplit(ls_output, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> fields = absl::StrSplit(line, absl::ByAnyChar(" \t"),
                                                           absl::SkipEmpty());
    if (fields.size() >= 4 && fields[0] != "TYPE") {
      rows.push_back({std::string(fields[0]), std::string(fields[1]),
                      std::string(fields.back())});
    }
  }
  return rows;
}

// Files under `root` (relative paths) whose name is the hex of one of `digests`: a blob stored
// there, whatever the store's layout.
std::vector<std::string> BlobFilesUnder(const std::string& root,
                                        const std::set<std::string>& digests) {
  std::vector<std::string> found;
  for (const std::string& file : ListFiles(root)) {
    for (const std::string& digest : digests) {
      if (absl::EndsWith(file, absl::StrCat("/", absl::StripPrefix(digest, "sha256:")))) {
        found.push_back(file);
      }
    }
  }
  return found;
}

// The digests in the first column of `ctr content ls` output (header skipped).
std::set<std::string> ListedDigests(const std::string& ls_output) {
  std::set<std::string> out;
  for (absl::string_view line : absl::StrSplit(ls_output, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> fields = absl::StrSplit(line, absl::ByAnyChar(" \t"),
                                                           absl::SkipEmpty());
    if (!fields.empty() && absl::StartsWith(fields[0], "sha256:")) {
      out.insert(std::string(fields[0]));
    }
  }
  return out;
}

class ContainerdProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    layout_ = dir_.Join("image");
    ASSERT_TRUE(MakeTestImage(layout_, kTag).ok());
    image_digests_ = ImageDigests(layout_);
    ASSERT_GE(image_digests_.size(), 3u) << "manifest, config and at least one layer";
    registry_ = std::make_unique<Registry>(dir_.path());
    absl::Status status = registry_->Start();
    ASSERT_TRUE(status.ok()) << status;
    status = registry_->Push(layout_, kTag, kImageName);
    ASSERT_TRUE(status.ok()) << status;
  }

  std::string ImageRef() const {
    return absl::StrCat(registry_->host(), "/", kImageName, ":", kTag);
  }

  // Pulls the image through `containerd`; on failure the message has ctr's output and the log.
  void Pull(Containerd& containerd) {
    CommandResult pull = Ctr(containerd.address(), "",
                             {"images", "pull", "--plain-http", ImageRef()});
    ASSERT_EQ(pull.exit_code, 0) << pull.output << "\ncontainerd log:\n" << containerd.ReadLog();
    CommandResult images = Ctr(containerd.address(), "", {"images", "ls", "-q"});
    ASSERT_EQ(images.exit_code, 0) << images.output;
    EXPECT_NE(images.output.find(ImageRef()), std::string::npos) << images.output;
  }

  TempDir dir_;
  std::string layout_;
  std::set<std::string> image_digests_;
  std::unique_ptr<Registry> registry_;
};

TEST_F(ContainerdProxyTest, BaselinePullIntoContainerdsOwnStore) {
  Containerd containerd(dir_.path(), {});
  absl::Status status = containerd.Start();
  ASSERT_TRUE(status.ok()) << status;
  Pull(containerd);
  CommandResult ls = Ctr(containerd.address(), "", {"content", "ls"});
  ASSERT_EQ(ls.exit_code, 0) << ls.output;
  std::set<std::string> listed = ListedDigests(ls.output);
  for (const std::string& digest : image_digests_) {
    EXPECT_EQ(listed.count(digest), 1u) << digest << " missing from containerd:\n" << ls.output;
  }
  // Where containerd's own store keeps them: the proxy test below looks for them there.
  EXPECT_EQ(BlobFilesUnder(containerd.root(), image_digests_).size(), image_digests_.size());
  EXPECT_EQ(WEXITSTATUS(containerd.Stop()), 0) << containerd.ReadLog();
}

TEST_F(ContainerdProxyTest, PullLandsEveryBlobInContentd) {
  Contentd::Options contentd_options;
  contentd_options.default_namespace = kContentdDefaultNamespace;
  Contentd contentd(dir_.path(), contentd_options);
  absl::Status status = contentd.Start();
  ASSERT_TRUE(status.ok()) << status;

  Containerd::Options options;
  options.content_proxy_address = contentd.address();
  Containerd containerd(dir_.path(), options);
  status = containerd.Start();
  ASSERT_TRUE(status.ok()) << status;

  // containerd loaded the proxy (named "berth" in its config) as a content plugin. Its built-in
  // store has the same type (io.containerd.content.v1, id "content"): the row must be the
  // proxy's own.
  CommandResult plugins = Ctr(containerd.address(), "", {"plugins", "ls"});
  ASSERT_EQ(plugins.exit_code, 0) << plugins.output;
  bool proxy_loaded = false;
  for (const PluginRow& row : PluginRows(plugins.output)) {
    if (row.type == "io.containerd.content.v1" && row.id == "berth") {
      EXPECT_EQ(row.status, "ok") << plugins.output;
      proxy_loaded = true;
    }
  }
  EXPECT_TRUE(proxy_loaded) << plugins.output;

  Pull(containerd);

  // Through containerd: its metadata lists the blobs (they are read from contentd).
  CommandResult ctd_ls = Ctr(containerd.address(), "", {"content", "ls"});
  ASSERT_EQ(ctd_ls.exit_code, 0) << ctd_ls.output;
  std::set<std::string> via_containerd = ListedDigests(ctd_ls.output);

  // Straight from contentd, in its default namespace.
  CommandResult cd_ls = Ctr(contentd.address(), kContentdDefaultNamespace, {"content", "ls"});
  ASSERT_EQ(cd_ls.exit_code, 0) << cd_ls.output << "\ncontentd log:\n" << contentd.ReadLog();
  std::set<std::string> in_contentd = ListedDigests(cd_ls.output);

  std::vector<std::string> files = ListFiles(contentd.root() + "/blobs");
  std::set<std::string> blob_files(files.begin(), files.end());

  for (const std::string& digest : image_digests_) {
    EXPECT_EQ(via_containerd.count(digest), 1u) << digest << " not listed by containerd";
    EXPECT_EQ(in_contentd.count(digest), 1u)
        << digest << " not in contentd's namespace " << kContentdDefaultNamespace << ":\n"
        << cd_ls.output;
    std::string file = absl::StrCat("sha256/", absl::StripPrefix(digest, "sha256:"));
    EXPECT_EQ(blob_files.count(file), 1u) << file << " not under " << contentd.root() << "/blobs";

    // Byte for byte what the registry was given.
    CommandResult get = Ctr(contentd.address(), kContentdDefaultNamespace,
                            {"content", "get", digest});
    ASSERT_EQ(get.exit_code, 0) << get.output;
    std::string hex(absl::StripPrefix(digest, "sha256:"));
    absl::StatusOr<std::string> original = ReadFile(layout_ + "/blobs/sha256/" + hex);
    ASSERT_TRUE(original.ok()) << original.status();
    EXPECT_EQ(Sha256Digest(get.output), digest);
    EXPECT_EQ(get.output.size(), original->size());
  }

  // No blob was stored under containerd's root (which is there: its metadata is). The baseline
  // test finds them there without the proxy.
  EXPECT_FALSE(ListFiles(containerd.root()).empty()) << containerd.root() << " was not read";
  EXPECT_THAT(BlobFilesUnder(containerd.root(), image_digests_), ::testing::IsEmpty());

  EXPECT_EQ(WEXITSTATUS(containerd.Stop()), 0) << containerd.ReadLog();
  EXPECT_EQ(WEXITSTATUS(contentd.Stop()), 0) << contentd.ReadLog();
}

}  // namespace
}  // namespace berth::integration
