// `berth import` and `berth export` end to end (issue 10, item 7): tarballs made by real peers
// (skopeo's oci-archive and docker-archive of the umoci test image) imported through the real
// imaged into a real contentd and snapshotd, every piece checked through the daemons' APIs (the
// records, the blobs and their gc labels, the committed snapshot chain, no lease left); an
// export read back by skopeo (digests identical), umoci (unpacked) and `ctr images import`
// into a containerd the test starts. And bad tarballs, one per class of refusal, each refused
// with a message naming the entry and nothing left behind: no record, no blob, no snapshot, no
// lease.

#include <sys/stat.h>

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "berth/distribution/v1/distribution.grpc.pb.h"
#include "integration/harness.h"
#include "integration/imaged_stack.h"
#include "lib/base/grpc_client.h"
#include "lib/base/posix.h"
#include "lib/content/grpc_content_store.h"
#include "lib/images/grpc_image_store.h"
#include "lib/images/oci.h"
#include "lib/leases/grpc_lease_manager.h"
#include "lib/snapshots/grpc_snapshotter.h"
#include "lib/testing/testing.h"

namespace berth::integration {
namespace {

// The leases pulls and imports take (berth.io/pull); image records keep leases of their own.
constexpr char kPullLeases[] = "labels.\"berth.io/pull\"";

Context Ctx() { return DefaultNamespace(); }

// One member of a hand-made tar: what no well-behaved tool writes is the point.
struct Member {
  Member(std::string n, std::string d, char t = '0', std::string l = "")
      : name(std::move(n)), data(std::move(d)), type(t), link(std::move(l)) {}
  std::string name;
  std::string data;
  char type = '0';  // '0' file, '2' symlink, '1' hard link, '3' char device, '5' directory
  std::string link;
};

// A ustar archive of `members`, written here byte by byte.
std::string Tar(const std::vector<Member>& members) {
  std::string out;
  for (const Member& m : members) {
    char h[512] = {};
    std::memcpy(h, m.name.data(), std::min<size_t>(m.name.size(), 100));
    std::snprintf(h + 100, 8, "%07o", m.type == '5' ? 0755 : 0644);
    std::snprintf(h + 108, 8, "%07o", 0);
    std::snprintf(h + 116, 8, "%07o", 0);
    std::snprintf(h + 124, 12, "%011llo", static_cast<unsigned long long>(m.data.size()));
    std::snprintf(h + 136, 12, "%011o", 0);
    h[156] = m.type;
    std::memcpy(h + 157, m.link.data(), std::min<size_t>(m.link.size(), 100));
    std::memcpy(h + 257, "ustar", 6);
    std::memcpy(h + 263, "00", 2);
    std::memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (unsigned char c : h) {
      sum += c;
    }
    std::snprintf(h + 148, 8, "%06o", sum);
    out.append(h, sizeof(h));
    out += m.data;
    out.append((512 - m.data.size() % 512) % 512, '\0');
  }
  out.append(1024, '\0');
  return out;
}

std::string BlobPath(const std::string& data) {
  return "blobs/sha256/" + Sha256Digest(data).substr(7);
}

std::string IndexJson(const std::string& manifest_digest, int64_t size) {
  return nlohmann::json{
      {"schemaVersion", 2},
      {"manifests",
       {{{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
         {"digest", manifest_digest},
         {"size", size},
         {"annotations", {{"io.containerd.image.name", "example.com/bad:1"}}}}}}}
      .dump();
}

class ImportExportTest : public ImagedStackTest {
 protected:
  void SetUp() override {
    layout_ = dir_.Join("layout");
    ASSERT_TRUE(MakeTestImage(layout_, "latest").ok());
    absl::Status stores = stack_.StartStores();
    ASSERT_TRUE(stores.ok()) << stores;
    absl::Status started = StartImaged();
    ASSERT_TRUE(started.ok()) << started;
  }

  absl::Status StartImaged() {
    return stack_.StartImaged(
        {"--import-max-entries", "32", "--import-max-bytes", std::to_string(8 << 20)});
  }

  CommandResult Berth(const std::vector<std::string>& args) { return stack_.Berth(args); }

  CommandResult Run(const std::vector<std::string>& argv) {
    CommandResult result;
    result.output = testing::RunCommand(argv, &result.exit_code);
    return result;
  }

  // skopeo copy of the test layout to `transport`:FILE[:ref].
  std::string Skopeo(const std::string& transport, const std::string& file,
                     const std::string& ref) {
    CommandResult copy = Run({"skopeo", "copy", "oci:" + layout_ + ":latest",
                              absl::StrCat(transport, ":", file, ":", ref)});
    EXPECT_EQ(copy.exit_code, 0) << copy.output;
    return file;
  }

  std::string LayoutBlob(const std::string& digest) const {
    return integration::LayoutBlob(layout_, digest);
  }

  nlohmann::json LayoutManifest() const {
    nlohmann::json index = nlohmann::json::parse(*ReadFile(layout_ + "/index.json"));
    return nlohmann::json::parse(LayoutBlob(index["manifests"][0]["digest"]));
  }

  // The chain the test image unpacks to is committed in snapshotd.
  void ExpectChain(const std::string& chain) {
    snapshots::GrpcSnapshotter snapshotter(Dial(snapshotd_.address()), "overlayfs");
    absl::StatusOr<snapshots::Info> top = snapshotter.Stat(Ctx(), chain);
    ASSERT_TRUE(top.ok()) << chain << ": " << top.status() << snapshotd_.ReadLog();
    EXPECT_EQ(top->kind, snapshots::Kind::kCommitted);
  }

  std::vector<std::string> Blobs() {
    content::GrpcContentStore content(Dial(contentd_.address()));
    std::vector<std::string> out;
    EXPECT_TRUE(content
                    .Walk(Ctx(), {},
                          [&](const content::Info& info) {
                            out.push_back(info.digest.ToString());
                            return absl::OkStatus();
                          })
                    .ok());
    return out;
  }

  // Nothing an import may leave behind after a refusal.
  void ExpectNothingLeft(const std::string& what) {
    images::GrpcImageStore images(Dial(address_));
    absl::StatusOr<std::vector<images::Image>> records = images.List(Ctx(), {});
    ASSERT_TRUE(records.ok()) << records.status();
    EXPECT_TRUE(records->empty()) << what << ": a record was left: " << (*records)[0].name;
    std::vector<std::string> blobs = Blobs();
    EXPECT_TRUE(blobs.empty()) << what << ": " << blobs.size() << " blobs left, first "
                               << blobs[0];
    leases::GrpcLeaseManager leases(Dial(contentd_.address()));
    absl::StatusOr<std::vector<leases::Lease>> list = leases.List(Ctx(), {});
    ASSERT_TRUE(list.ok()) << list.status();
    EXPECT_TRUE(list->empty()) << what << ": a lease was left";
    content::GrpcContentStore content(Dial(contentd_.address()));
    absl::StatusOr<std::vector<content::IngestStatus>> ingests = content.ListStatuses(Ctx(), {});
    ASSERT_TRUE(ingests.ok());
    EXPECT_TRUE(ingests->empty()) << what << ": an ingest was left: " << (*ingests)[0].ref;
    snapshots::GrpcSnapshotter snapshotter(Dial(snapshotd_.address()), "overlayfs");
    int snapshots = 0;
    ASSERT_TRUE(snapshotter
                    .Walk(Ctx(), {},
                          [&](const snapshots::Info&) {
                            ++snapshots;
                            return absl::OkStatus();
                          })
                    .ok());
    EXPECT_EQ(snapshots, 0) << what;
  }

  std::string layout_;
};

TEST_F(ImportExportTest, ImportsSkopeoOciArchiveWithBlobsLabelsRecordAndSnapshotChain) {
  std::string archive = Skopeo("oci-archive", dir_.Join("oci.tar"), "test/hello:v1");
  CommandResult import = Berth({"import", archive});
  ASSERT_EQ(import.exit_code, 0) << import.output << imaged_.ReadLog();

  nlohmann::json index = nlohmann::json::parse(*ReadFile(layout_ + "/index.json"));
  std::string manifest_digest = index["manifests"][0]["digest"];
  nlohmann::json manifest = LayoutManifest();
  std::string config_digest = manifest["config"]["digest"];
  EXPECT_TRUE(absl::StrContains(import.output, absl::StrCat("imported docker.io/test/hello:v1 ",
                                                            manifest_digest)))
      << import.output;

  // The record, pointing at the manifest skopeo wrote (the layout's, byte for byte).
  images::GrpcImageStore images(Dial(address_));
  absl::StatusOr<images::Image> image = images.Get(Ctx(), "docker.io/test/hello:v1");
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->target.digest.ToString(), manifest_digest);
  EXPECT_EQ(image->target.size, static_cast<int64_t>(LayoutBlob(manifest_digest).size()));

  // Every blob, with the puller's gc labels.
  content::GrpcContentStore content(Dial(contentd_.address()));
  std::vector<std::string> blobs = {manifest_digest, config_digest};
  for (const nlohmann::json& layer : manifest["layers"]) {
    blobs.push_back(layer["digest"]);
  }
  for (const std::string& digest : blobs) {
    absl::StatusOr<content::Info> info = content.GetInfo(Ctx(), *Digest::Parse(digest));
    ASSERT_TRUE(info.ok()) << digest << ": " << info.status();
    EXPECT_EQ(info->size, static_cast<int64_t>(LayoutBlob(digest).size()));
    EXPECT_TRUE(absl::StrContains(import.output, digest + " done")) << digest << import.output;
  }
  absl::StatusOr<content::Info> root = content.GetInfo(Ctx(), *Digest::Parse(manifest_digest));
  EXPECT_EQ(root->labels.count("containerd.io/gc.root"), 0u);  // the record's lease holds it
  EXPECT_EQ(root->labels["containerd.io/gc.ref.content.config"], config_digest);
  EXPECT_EQ(root->labels["containerd.io/gc.ref.content.l.0"], manifest["layers"][0]["digest"]);
  nlohmann::json config = nlohmann::json::parse(LayoutBlob(config_digest));
  std::string chain = TopChainId(config);
  absl::StatusOr<content::Info> config_info = content.GetInfo(Ctx(), *Digest::Parse(config_digest));
  EXPECT_EQ(config_info->labels["containerd.io/gc.ref.snapshot.overlayfs"], chain);
  ExpectChain(chain);

  // No lease left; a second import finds every blob there and keeps the record.
  leases::GrpcLeaseManager leases(Dial(contentd_.address()));
  EXPECT_TRUE(leases.List(Ctx(), {kPullLeases})->empty());
  CommandResult again = Berth({"import", archive});
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_TRUE(absl::StrContains(again.output, manifest_digest + " exists")) << again.output;
  EXPECT_TRUE(leases.List(Ctx(), {kPullLeases})->empty());

  // Compressed, the same archive imports the same.
  CommandResult gzip = Run({"gzip", "-k", archive});
  ASSERT_EQ(gzip.exit_code, 0) << gzip.output;
  CommandResult gzipped = Berth({"import", archive + ".gz"});
  ASSERT_EQ(gzipped.exit_code, 0) << gzipped.output;
  EXPECT_TRUE(absl::StrContains(gzipped.output, absl::StrCat("imported docker.io/test/hello:v1 ",
                                                             manifest_digest)))
      << gzipped.output;
}

TEST_F(ImportExportTest, ImportsSkopeoDockerArchiveAsSchema2WithTheSameChain) {
  std::string archive = Skopeo("docker-archive", dir_.Join("docker.tar"), "test/hello:v2");
  // Through stdin this time.
  CommandResult import = Run({"/bin/sh", "-c",
                              absl::StrCat(testing::BinaryPath("tools/berth/berth"),
                                           " --imaged-address ", address_, " import - < ",
                                           archive)});
  ASSERT_EQ(import.exit_code, 0) << import.output << imaged_.ReadLog();

  images::GrpcImageStore images(Dial(address_));
  absl::StatusOr<images::Image> image = images.Get(Ctx(), "docker.io/test/hello:v2");
  ASSERT_TRUE(image.ok()) << image.status() << import.output;
  EXPECT_EQ(image->target.media_type, "application/vnd.docker.distribution.manifest.v2+json");

  // The manifest made from manifest.json: the layout's config, uncompressed layers whose
  // digests are the config's diff ids.
  content::GrpcContentStore content(Dial(contentd_.address()));
  absl::StatusOr<std::string> raw = content::ReadBlob(content, Ctx(), image->target.digest);
  ASSERT_TRUE(raw.ok()) << raw.status();
  nlohmann::json manifest = nlohmann::json::parse(*raw);
  std::string config_digest = LayoutManifest()["config"]["digest"];
  EXPECT_EQ(manifest["config"]["digest"], config_digest);
  EXPECT_EQ(manifest["config"]["mediaType"], "application/vnd.docker.container.image.v1+json");
  nlohmann::json config = nlohmann::json::parse(LayoutBlob(config_digest));
  ASSERT_EQ(manifest["layers"].size(), config["rootfs"]["diff_ids"].size());
  for (size_t i = 0; i < manifest["layers"].size(); ++i) {
    EXPECT_EQ(manifest["layers"][i]["digest"], config["rootfs"]["diff_ids"][i]);
    EXPECT_EQ(manifest["layers"][i]["mediaType"], "application/vnd.docker.image.rootfs.diff.tar");
  }
  absl::StatusOr<content::Info> root = content.GetInfo(Ctx(), image->target.digest);
  EXPECT_EQ(root->labels.count("containerd.io/gc.root"), 0u);  // the record's lease holds it
  ExpectChain(TopChainId(config));
  leases::GrpcLeaseManager leases(Dial(contentd_.address()));
  EXPECT_TRUE(leases.List(Ctx(), {kPullLeases})->empty());
}

TEST_F(ImportExportTest, ExportIsReadBySkopeoUmociAndCtrImport) {
  CommandResult import = Berth({"import", Skopeo("oci-archive", dir_.Join("oci.tar"), "test/hello:v1")});
  ASSERT_EQ(import.exit_code, 0) << import.output;
  nlohmann::json index = nlohmann::json::parse(*ReadFile(layout_ + "/index.json"));
  std::string manifest_digest = index["manifests"][0]["digest"];

  std::string out = dir_.Join("out.tar");
  CommandResult exported = Berth({"export", out, "docker.io/test/hello:v1"});
  ASSERT_EQ(exported.exit_code, 0) << exported.output << imaged_.ReadLog();

  // skopeo: the manifest is the one imported, byte for byte; a copy reads every blob.
  CommandResult raw = Run({"skopeo", "inspect", "--raw", "oci-archive:" + out});
  ASSERT_EQ(raw.exit_code, 0) << raw.output;
  EXPECT_EQ(raw.output, LayoutBlob(manifest_digest));
  CommandResult inspect = Run({"skopeo", "inspect", "oci-archive:" + out + ":v1"});
  ASSERT_EQ(inspect.exit_code, 0) << inspect.output;
  EXPECT_EQ(nlohmann::json::parse(inspect.output)["Digest"], manifest_digest);
  CommandResult copy =
      Run({"skopeo", "copy", "oci-archive:" + out, "oci:" + dir_.Join("copied") + ":x"});
  ASSERT_EQ(copy.exit_code, 0) << copy.output;

  // umoci: the layout, unpacked, holds /hello.
  std::string extracted = dir_.Join("extracted");
  ASSERT_EQ(::mkdir(extracted.c_str(), 0755), 0);
  CommandResult untar = Run({"tar", "-xf", out, "-C", extracted});
  ASSERT_EQ(untar.exit_code, 0) << untar.output;
  CommandResult unpack =
      Run({"umoci", "unpack", "--image", extracted + ":v1", dir_.Join("bundle")});
  ASSERT_EQ(unpack.exit_code, 0) << unpack.output;
  struct stat st {};
  EXPECT_EQ(::stat(dir_.Join("bundle/rootfs/hello").c_str(), &st), 0);

  // containerd: `ctr images import` names the image from io.containerd.image.name.
  Containerd containerd(dir_.path(), Containerd::Options{});
  absl::Status started = containerd.Start();
  ASSERT_TRUE(started.ok()) << started << containerd.ReadLog();
  CommandResult ctr = Ctr(containerd.address(), "default", {"images", "import", out});
  ASSERT_EQ(ctr.exit_code, 0) << ctr.output << containerd.ReadLog();
  CommandResult ls = Ctr(containerd.address(), "default", {"images", "ls"});
  EXPECT_TRUE(absl::StrContains(ls.output, "docker.io/test/hello:v1")) << ls.output;
  EXPECT_TRUE(absl::StrContains(ls.output, manifest_digest)) << ls.output;

  // And back: containerd's own export, imported by berth under another name.
  std::string from_ctr = dir_.Join("ctr.tar");
  ctr = Ctr(containerd.address(), "default",
            {"images", "tag", "docker.io/test/hello:v1", "example.com/from-ctr:1"});
  ASSERT_EQ(ctr.exit_code, 0) << ctr.output;
  ctr = Ctr(containerd.address(), "default",
            {"images", "export", from_ctr, "example.com/from-ctr:1"});
  ASSERT_EQ(ctr.exit_code, 0) << ctr.output;
  containerd.Stop();
  CommandResult back = Berth({"import", from_ctr});
  ASSERT_EQ(back.exit_code, 0) << back.output << imaged_.ReadLog();
  EXPECT_TRUE(absl::StrContains(back.output, "imported example.com/from-ctr:1 ")) << back.output;

  // An unknown name: NotFound, and no file left.
  CommandResult missing = Berth({"export", dir_.Join("none.tar"), "example.com/none:1"});
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_TRUE(absl::StrContains(missing.output, "example.com/none:1")) << missing.output;
  EXPECT_NE(::stat(dir_.Join("none.tar").c_str(), &st), 0);
}

// A layout made here from the test image: index.json naming a nested index (outer -> a
// multi-platform index of the host's manifest and an s390x one) and the host's manifest
// itself, twice (a reference name and a bare tag).
class MultiPlatformArchive {
 public:
  MultiPlatformArchive(const std::string& layout, const std::string& dir) : dir_(dir) {
    EXPECT_EQ(testing::RunCommand({"cp", "-a", layout, dir}), "");
    nlohmann::json index = nlohmann::json::parse(*ReadFile(dir + "/index.json"));
    host_manifest = index["manifests"][0];
    host_manifest.erase("annotations");
    nlohmann::json manifest = nlohmann::json::parse(Blob(host_manifest["digest"]));
    host_config = manifest["config"]["digest"];
    nlohmann::json config = nlohmann::json::parse(Blob(host_config));
    config["architecture"] = "s390x";
    foreign_config = Put(config.dump());
    manifest["config"]["digest"] = foreign_config;
    manifest["config"]["size"] = config.dump().size();
    std::string foreign_raw = manifest.dump();
    foreign_manifest = Put(foreign_raw);
    nlohmann::json host_entry = host_manifest;
    host_entry["platform"] = {{"os", "linux"},
                              {"architecture", images::HostPlatform().architecture}};
    nlohmann::json foreign_entry = {{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                                    {"digest", foreign_manifest},
                                    {"size", foreign_raw.size()},
                                    {"platform", {{"os", "linux"}, {"architecture", "s390x"}}}};
    inner = Put(IndexOf({host_entry, foreign_entry}).dump());
    outer = Put(IndexOf({Entry(inner)}).dump());
    nlohmann::json outer_entry = Entry(outer);
    outer_entry["annotations"] = {{"io.containerd.image.name", "example.com/multi:1"}};
    nlohmann::json named = host_manifest;
    named["annotations"] = {{"org.opencontainers.image.ref.name", "example.com/single:2"}};
    nlohmann::json tag_only = host_manifest;
    tag_only["annotations"] = {{"org.opencontainers.image.ref.name", "latest"}};
    EXPECT_TRUE(
        WriteFileAtomic(dir + "/index.json", IndexOf({outer_entry, named, tag_only}).dump(), 0644)
            .ok());
  }

  // The layout as a tarball made by tar(1), without the blobs in `leave_out`.
  std::string Tar(const std::string& file, const std::vector<std::string>& leave_out) {
    std::vector<std::string> argv = {"tar", "-cf", file, "-C", dir_};
    for (const std::string& digest : leave_out) {
      argv.push_back("--exclude=blobs/sha256/" + digest.substr(7));
    }
    argv.insert(argv.end(), {"oci-layout", "index.json", "blobs"});
    int code = -1;
    std::string output = testing::RunCommand(argv, &code);
    EXPECT_EQ(code, 0) << output;
    return file;
  }

  nlohmann::json host_manifest;
  std::string host_config, foreign_config, foreign_manifest, inner, outer;

 private:
  std::string Blob(const std::string& digest) {
    return *ReadFile(dir_ + "/blobs/sha256/" + digest.substr(7));
  }
  std::string Put(const std::string& data) {
    EXPECT_TRUE(WriteFileAtomic(dir_ + "/" + BlobPath(data), data, 0644).ok());
    sizes_[Sha256Digest(data)] = data.size();
    return Sha256Digest(data);
  }
  nlohmann::json Entry(const std::string& index_digest) {
    return {{"mediaType", "application/vnd.oci.image.index.v1+json"},
            {"digest", index_digest},
            {"size", sizes_[index_digest]}};
  }
  static nlohmann::json IndexOf(const std::vector<nlohmann::json>& manifests) {
    return {{"schemaVersion", 2},
            {"mediaType", "application/vnd.oci.image.index.v1+json"},
            {"manifests", manifests}};
  }

  std::string dir_;
  std::map<std::string, size_t> sizes_;
};

TEST_F(ImportExportTest, NestedMultiPlatformIndexNeedsOnlyThePlatformUnlessAllPlatforms) {
  MultiPlatformArchive made(layout_, dir_.Join("multi"));
  std::string partial = made.Tar(dir_.Join("partial.tar"), {made.foreign_manifest});

  // Every platform wanted: the s390x manifest is missing, named by the inner index.
  CommandResult all = Berth({"import", "--all-platforms", partial});
  EXPECT_EQ(all.exit_code, 1) << all.output;
  EXPECT_TRUE(absl::StrContains(all.output, absl::StrCat("index ", made.inner, " names ",
                                                         made.foreign_manifest,
                                                         ", which the archive does not hold")))
      << all.output;
  ExpectNothingLeft("--all-platforms");

  // The host's platform only: two records (the bare tag names none), and the whole archive
  // named by --index-name.
  CommandResult import = Berth({"import", "--index-name", "example.com/whole:1", partial});
  ASSERT_EQ(import.exit_code, 0) << import.output << imaged_.ReadLog();
  images::GrpcImageStore images(Dial(address_));
  absl::StatusOr<std::vector<images::Image>> records = images.List(Ctx(), {});
  ASSERT_TRUE(records.ok());
  std::map<std::string, std::string> targets;
  for (const images::Image& image : *records) {
    targets[image.name] = image.target.digest.ToString();
  }
  EXPECT_EQ(targets.size(), 3u) << import.output;
  EXPECT_EQ(targets["example.com/multi:1"], made.outer);
  EXPECT_EQ(targets["example.com/single:2"], made.host_manifest["digest"]);
  EXPECT_EQ(targets["example.com/whole:1"],
            Sha256Digest(*ReadFile(dir_.Join("multi/index.json"))));
  content::GrpcContentStore content(Dial(contentd_.address()));
  absl::StatusOr<content::Info> outer = content.GetInfo(Ctx(), *Digest::Parse(made.outer));
  ASSERT_TRUE(outer.ok()) << outer.status();
  EXPECT_EQ(outer->labels["containerd.io/gc.ref.content.m.0"], made.inner);
  EXPECT_EQ(outer->labels.count("containerd.io/gc.root"), 0u);  // the record's lease holds it
  absl::StatusOr<content::Info> inner = content.GetInfo(Ctx(), *Digest::Parse(made.inner));
  EXPECT_EQ(inner->labels["containerd.io/gc.ref.content.m.1"], made.foreign_manifest);
  EXPECT_FALSE(content.GetInfo(Ctx(), *Digest::Parse(made.foreign_manifest)).ok());
  absl::StatusOr<content::Info> config = content.GetInfo(Ctx(), *Digest::Parse(made.host_config));
  ASSERT_TRUE(config.ok());
  std::string chain = config->labels["containerd.io/gc.ref.snapshot.overlayfs"];
  ExpectChain(chain);

  // With every blob in: all platforms kept, only the host's unpacked.
  std::string whole = made.Tar(dir_.Join("whole.tar"), {});
  CommandResult again = Berth({"import", "--all-platforms", whole});
  ASSERT_EQ(again.exit_code, 0) << again.output << imaged_.ReadLog();
  absl::StatusOr<content::Info> foreign =
      content.GetInfo(Ctx(), *Digest::Parse(made.foreign_config));
  ASSERT_TRUE(foreign.ok()) << foreign.status();
  EXPECT_EQ(foreign->labels.count("containerd.io/gc.ref.snapshot.overlayfs"), 0u);

  // Exported with every platform, the outer index is what skopeo reads (skopeo copies no
  // nested index) and every platform's blobs are in; by default the s390x ones are not.
  std::string out = dir_.Join("multi-out.tar");
  CommandResult exported = Berth({"export", "--all-platforms", out, "example.com/multi:1"});
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  CommandResult raw = Run({"skopeo", "inspect", "--raw", "oci-archive:" + out});
  ASSERT_EQ(raw.exit_code, 0) << raw.output;
  EXPECT_EQ(Sha256Digest(raw.output), made.outer);
  CommandResult list = Run({"tar", "-tf", out});
  EXPECT_TRUE(absl::StrContains(list.output, made.foreign_config.substr(7))) << list.output;
  std::string host_only = dir_.Join("host-out.tar");
  exported = Berth({"export", host_only, "example.com/multi:1"});
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  list = Run({"tar", "-tf", host_only});
  EXPECT_FALSE(absl::StrContains(list.output, made.foreign_config.substr(7))) << list.output;
  EXPECT_TRUE(absl::StrContains(list.output, made.host_config.substr(7))) << list.output;

  // Several records in one tarball: one index.json entry each, named, blobs once.
  std::string both = dir_.Join("both.tar");
  exported = Berth({"export", both, "example.com/multi:1", "example.com/single:2"});
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  CommandResult index = Run({"tar", "-xOf", both, "index.json"});
  ASSERT_EQ(index.exit_code, 0) << index.output;
  nlohmann::json entries = nlohmann::json::parse(index.output)["manifests"];
  ASSERT_EQ(entries.size(), 2u) << index.output;
  EXPECT_EQ(entries[0]["digest"], made.outer);
  EXPECT_EQ(entries[0]["annotations"]["io.containerd.image.name"], "example.com/multi:1");
  EXPECT_EQ(entries[1]["digest"], made.host_manifest["digest"]);
  EXPECT_EQ(entries[1]["annotations"]["org.opencontainers.image.ref.name"], "2");
  list = Run({"tar", "-tf", both});
  std::vector<std::string> pieces = absl::StrSplit(list.output, made.host_config.substr(7));
  EXPECT_EQ(pieces.size(), 2u) << "the config should be in once: " << list.output;
}

TEST_F(ImportExportTest, ImagedKilledMidImportLeavesNoLeaseOnceBackAndTheNextImportWorks) {
  std::string archive = Skopeo("oci-archive", dir_.Join("oci.tar"), "test/hello:v1");
  std::string data = *ReadFile(archive);
  leases::GrpcLeaseManager leases(Dial(contentd_.address()));
  {
    auto stub = distribution::v1::Distribution::NewStub(Dial(address_));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    auto stream = stub->Import(&context);
    distribution::v1::ImportRequest request;
    request.mutable_options()->set_unpack(true);
    request.set_data(data.substr(0, data.size() / 2));  // and the rest never comes
    ASSERT_TRUE(stream->Write(request));
    ASSERT_TRUE(testing::WaitFor(
        [&] {
          absl::StatusOr<std::vector<leases::Lease>> list = leases.List(Ctx(), {});
          return list.ok() && !list->empty();
        },
        absl::Seconds(30)));
    imaged_.Kill();
    distribution::v1::ImportProgress progress;
    while (stream->Read(&progress)) {
    }
    EXPECT_FALSE(stream->Finish().ok());
  }
  EXPECT_FALSE(leases.List(Ctx(), {kPullLeases})->empty()) << "the import's lease should be there";
  absl::Status started = StartImaged();
  ASSERT_TRUE(started.ok()) << started;
  EXPECT_TRUE(leases.List(Ctx(), {kPullLeases})->empty()) << imaged_.ReadLog();
  images::GrpcImageStore images(Dial(address_));
  EXPECT_TRUE(images.List(Ctx(), {})->empty());

  CommandResult import = Berth({"import", archive});
  ASSERT_EQ(import.exit_code, 0) << import.output << imaged_.ReadLog();
  EXPECT_TRUE(images.Get(Ctx(), "docker.io/test/hello:v1").ok());
}

TEST_F(ImportExportTest, BadTarballsAreRefusedNamingTheEntryAndLeaveNothing) {
  const std::string layer = "not really a layer, but a blob all the same";
  const std::string good = BlobPath(layer);
  const std::string config = R"({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}})";
  const std::string manifest =
      nlohmann::json{{"schemaVersion", 2},
                     {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                     {"config",
                      {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                       {"digest", Sha256Digest(config)},
                       {"size", config.size()}}},
                     {"layers", nlohmann::json::array()}}
          .dump();
  const std::string index = IndexJson(Sha256Digest(manifest), manifest.size());
  struct Case {
    std::string what;
    std::string tar;
    std::string message;  // a part of the error
  };
  std::vector<Case> cases = {
      {"absolute path", Tar({{good, layer}, {"/etc/evil", "x"}}), "\"/etc/evil\": absolute path"},
      {"dot-dot", Tar({{good, layer}, {"blobs/../../evil", "x"}}), "blobs/../../evil"},
      {"symlink", Tar({{good, layer}, {"index.json", "", '2', "/etc/passwd"}}),
       "\"index.json\": a symlink"},
      {"hard link", Tar({{good, layer}, {"blobs/sha256/x", "", '1', good}}),
       "\"blobs/sha256/x\": hard links are not allowed"},
      {"device", Tar({{good, layer}, {"dev", "", '3'}}), "\"dev\": a character device"},
      {"content not its name",
       Tar({{good, layer}, {BlobPath("something else"), "tampered"}}),
       "its content is " + Sha256Digest("tampered")},
      {"blob missing",
       Tar({{good, layer}, {"oci-layout", R"({"imageLayoutVersion":"1.0.0"})"},
            {BlobPath(manifest), manifest}, {"index.json", index}}),
       Sha256Digest(config) + ", which the archive does not hold"},
      {"index.json over 4 MiB",
       Tar({{good, layer}, {"index.json", std::string((4 << 20) + 1, ' ')}}),
       "\"index.json\": 4194305 bytes"},
      {"too many entries",
       [] {
         std::vector<Member> many;
         for (int i = 0; i < 40; ++i) {
           many.push_back({absl::StrCat("d", i), "", '5'});
         }
         return Tar(many);
       }(),
       "\"d32\": more than 32 entries"},
      {"too many bytes", Tar({{good, layer}, {"big", std::string(9 << 20, 'x')}}),
       "\"big\" (9437184 bytes)"},
      {"not a tar", std::string(4096, 'z'), "archive"},
      {"no image named",
       Tar({{good, layer}, {"manifest.json", "[]"}}), "names no image"},
  };
  for (const Case& c : cases) {
    std::string file = dir_.Join("bad.tar");
    ASSERT_TRUE(WriteFileAtomic(file, c.tar, 0644).ok());
    CommandResult import = Berth({"import", file});
    EXPECT_EQ(import.exit_code, 1) << c.what << ": " << import.output;
    EXPECT_TRUE(absl::StrContains(import.output, c.message))
        << c.what << ": want \"" << c.message << "\" in: " << import.output;
    ExpectNothingLeft(c.what);
  }

  // On the wire: InvalidArgument.
  auto stub = distribution::v1::Distribution::NewStub(Dial(address_));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto stream = stub->Import(&context);
  distribution::v1::ImportRequest request;
  request.mutable_options()->set_unpack(true);
  request.set_data(Tar({{"/abs", "x"}}));
  std::thread sender([&] {
    stream->Write(request);
    stream->WritesDone();
  });
  distribution::v1::ImportProgress progress;
  while (stream->Read(&progress)) {
  }
  sender.join();
  grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  ExpectNothingLeft("on the wire");
}

}  // namespace
}  // namespace berth::integration
