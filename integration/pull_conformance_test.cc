// berth's pull against every image shape issue 10 names, each made at test time with umoci and
// skopeo and served by a real docker-registry on 127.0.0.1: gzip, zstd and uncompressed layers,
// OCI and Docker schema2 manifests, a multi-platform index (linux/amd64, linux/arm64, linux/arm/v7;
// berth picks this host's), 32 layers, whiteouts and opaque directories, hardlinks, symlinks,
// xattrs, setuid/setgid/sticky modes and owners.
//
// For each: `berth pull` through the real imaged, contentd and snapshotd, then the top snapshot
// of the chain mounted read-only and compared file for file with umoci's unpack of the same
// image (the OCI/gzip layout the other shapes were converted from: skopeo recompresses the same
// tars, so the layers' diff ids and contents are the same): type, mode, owner, size, content,
// mtime, link target, hardlink identity, xattrs (services/snapshotd/archive/testutil.h's
// DescribeTree). And containerd's ctr sees the pulled images through imaged's socket.

#include <sys/stat.h>

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "integration/harness.h"
#include "integration/imaged_stack.h"
#include "lib/base/grpc_client.h"
#include "lib/base/posix.h"
#include "lib/content/grpc_content_store.h"
#include "lib/images/grpc_image_store.h"
#include "lib/mount/mount.h"
#include "lib/snapshots/grpc_snapshotter.h"
#include "lib/testing/testing.h"
#include "services/snapshotd/archive/testutil.h"

namespace berth::integration {
namespace {

using snapshotd::testutil::DescribeTree;
using snapshotd::testutil::TarBuilder;

constexpr char kRepo[] = "conformance/image";

Context Ctx() {
  Context ctx;
  ctx.ns = "default";
  return ctx.WithTimeout(absl::Seconds(120));
}

CommandResult RunTool(const std::vector<std::string>& argv) {
  CommandResult result;
  result.output = testing::RunCommand(argv, &result.exit_code);
  return result;
}

std::string HostArch() {
  CommandResult arch = RunTool({"dpkg", "--print-architecture"});
  EXPECT_EQ(arch.exit_code, 0) << arch.output;
  while (!arch.output.empty() && (arch.output.back() == '\n' || arch.output.back() == ' ')) {
    arch.output.pop_back();
  }
  return arch.output;
}

// Whiteout and opaque-directory markers (the OCI image spec's), as empty regular files.
void Whiteout(TarBuilder& tar, const std::string& dir, const std::string& name) {
  tar.File(dir.empty() ? ".wh." + name : absl::StrCat(dir, "/.wh.", name), "");
}
void Opaque(TarBuilder& tar, const std::string& dir) { tar.File(dir + "/.wh..wh..opq", ""); }

// Three layers with every kind of entry an applier must get right, and the later layers
// deleting, replacing and hiding what the first made.
std::vector<TarBuilder> SpecialLayers() {
  std::vector<TarBuilder> layers(3);
  TarBuilder& one = layers[0];
  one.Dir("etc");
  one.File("etc/hello", "hello\n");
  auto& data = one.Dir("data", 0750);
  data.uid = 1000;
  data.gid = 1001;
  data.xattrs["user.berth.dir"] = "d";
  auto& a = one.File("data/a", "bytes two names share\n");
  a.uid = 1000;
  a.gid = 1001;
  a.xattrs["user.berth"] = "one";
  one.Hardlink("data/b", "data/a");
  one.Hardlink("data/c", "data/a");
  one.Symlink("link", "data/a");
  one.Symlink("abs", "/etc/hello");
  one.Symlink("dangling", "/nowhere/at/all");
  one.Dir("bin");
  one.File("bin/su", "setuid root\n", 04755);
  one.File("bin/sg", "setgid\n", 02755).gid = 50;
  one.Dir("tmp", 01777);
  auto& secret = one.File("private", "secret\n", 0600);
  secret.uid = 1234;
  secret.gid = 5678;
  one.File("empty", "");
  one.Dir("opaque", 0705);
  one.File("opaque/x", "x\n");
  one.File("opaque/y", "y\n");
  one.Dir("opaque/sub");
  one.File("opaque/sub/z", "z\n");
  one.File("gone", "deleted by layer 2\n");
  one.Dir("gonedir");
  one.Dir("gonedir/sub");
  one.File("gonedir/sub/f", "f\n");

  TarBuilder& two = layers[1];
  Whiteout(two, "", "gone");
  Whiteout(two, "", "gonedir");
  two.Dir("opaque", 0705);
  Opaque(two, "opaque");
  two.File("opaque/new", "after the opaque marker\n");
  two.Dir("etc");
  auto& hello = two.File("etc/hello", "hello again\n", 0640);
  hello.uid = 7;
  hello.gid = 8;
  two.Dir("data", 0750);
  Whiteout(two, "data", "c");
  two.Dir("data2");
  two.File("data2/c", "c\n").xattrs["user.berth"] = "two";
  two.Hardlink("data2/d", "data2/c");

  TarBuilder& three = layers[2];
  three.Dir("bin");
  auto& owned = three.File("bin/owned-suid", "setuid, not root's\n", 04750);
  owned.uid = 1000;
  owned.gid = 1000;
  three.Dir("opaque", 0705);
  three.File("opaque/later", "later\n");
  three.Dir("etc");
  three.Symlink("etc/hello-link", "hello");
  three.File("gone", "back in layer 3\n");
  return layers;
}

// 32 layers: each adds /layers/<i> and replaces /common; every third deletes an earlier
// /layers entry; every eighth makes /stack opaque.
std::vector<TarBuilder> ManyLayers() {
  std::vector<TarBuilder> layers(32);
  for (int i = 0; i < 32; ++i) {
    TarBuilder& tar = layers[i];
    tar.Dir("layers");
    tar.File(absl::StrCat("layers/", i), absl::StrCat("layer ", i, "\n"));
    tar.File("common", absl::StrCat("replaced by layer ", i, "\n"), 0600 + (i % 8));
    if (i >= 3 && i % 3 == 0) {
      Whiteout(tar, "layers", absl::StrCat(i - 3));
    }
    tar.Dir("stack");
    if (i % 8 == 7) {
      Opaque(tar, "stack");
    }
    tar.File(absl::StrCat("stack/", i), "s\n");
  }
  return layers;
}

}  // namespace

// The platforms of the multi-platform index PushMultiPlatformIndex makes.
struct Platform {
  std::string arch, variant;
  std::string Name() const {
    return absl::StrCat("linux/", arch, variant.empty() ? "" : "/", variant);
  }
};
const std::vector<Platform>& IndexPlatforms() {
  static const std::vector<Platform> platforms = {{"amd64", ""}, {"arm64", ""}, {"arm", "v7"}};
  return platforms;
}

class PullConformanceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(registry_.Start().ok()) << registry_.ReadLog();
    absl::Status started = stack_.Start();
    ASSERT_TRUE(started.ok()) << started;
  }

  // umoci: a new empty image `layout:tag` for linux/`arch` (the layout is made if missing).
  void NewImage(const std::string& layout, const std::string& tag, const std::string& arch) {
    struct stat st {};
    if (::stat(layout.c_str(), &st) != 0) {
      CommandResult init = RunTool({"umoci", "init", "--layout", layout});
      ASSERT_EQ(init.exit_code, 0) << init.output;
    }
    CommandResult made = RunTool({"umoci", "new", "--image", layout + ":" + tag});
    ASSERT_EQ(made.exit_code, 0) << made.output;
    std::vector<std::string> config = {"umoci", "config", "--image", layout + ":" + tag,
                                       "--os", "linux", "--architecture", arch};
    CommandResult configured = RunTool(config);
    ASSERT_EQ(configured.exit_code, 0) << configured.output;
  }

  // umoci: `tar` appended to `layout:tag` as a gzip layer, exactly as built.
  void AddLayer(const std::string& layout, const std::string& tag, const TarBuilder& tar) {
    std::string file = dir_.Join(absl::StrCat("layer-", layers_++, ".tar"));
    ASSERT_TRUE(WriteFileAtomic(file, tar.Build(), 0644).ok());
    CommandResult added =
        RunTool({"umoci", "raw", "add-layer", "--image", layout + ":" + tag, file});
    ASSERT_EQ(added.exit_code, 0) << added.output;
    ::unlink(file.c_str());
  }

  // skopeo copy `from` to the registry's `kRepo:tag`, with `flags`.
  void Push(const std::string& from, const std::string& tag,
            const std::vector<std::string>& flags = {}) {
    std::vector<std::string> argv = {"skopeo", "copy", "-q", "--dest-tls-verify=false"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    argv.push_back(from);
    argv.push_back(absl::StrCat("docker://", Reference(tag)));
    CommandResult pushed = RunTool(argv);
    ASSERT_EQ(pushed.exit_code, 0) << pushed.output;
  }

  std::string Reference(const std::string& tag) const {
    return absl::StrCat(registry_.host(), "/", kRepo, ":", tag);
  }

  CommandResult Pull(const std::string& tag) {
    return stack_.Berth({"pull", Reference(tag), "--insecure-registry", registry_.host()});
  }

  nlohmann::json LayoutJson(const std::string& layout, const std::string& digest) const {
    absl::StatusOr<std::string> text = ReadFile(layout + "/blobs/sha256/" + digest.substr(7));
    EXPECT_TRUE(text.ok()) << text.status();
    return nlohmann::json::parse(text.ok() ? *text : "{}");
  }

  // The manifest `layout:tag` names in the layout's index.json.
  nlohmann::json TaggedDescriptor(const std::string& layout, const std::string& tag) const {
    nlohmann::json index = nlohmann::json::parse(*ReadFile(layout + "/index.json"));
    for (const nlohmann::json& desc : index["manifests"]) {
      if (desc["annotations"].value("org.opencontainers.image.ref.name", "") == tag) {
        return desc;
      }
    }
    ADD_FAILURE() << "no " << tag << " in " << layout;
    return nlohmann::json::object();
  }

  // The top snapshot `layout:tag` unpacks to.
  std::string ChainOf(const std::string& layout, const std::string& tag) const {
    nlohmann::json manifest = LayoutJson(layout, TaggedDescriptor(layout, tag)["digest"]);
    return TopChainId(LayoutJson(layout, manifest["config"]["digest"]));
  }

  // The chain `layout:tag` unpacks to, mounted read-only from snapshotd, against umoci's unpack
  // of `layout:tag`: the same tree.
  void ExpectRootfsMatchesUmoci(const std::string& layout, const std::string& tag) {
    std::string bundle = dir_.Join(absl::StrCat("umoci-", views_));
    CommandResult unpacked = RunTool({"umoci", "unpack", "--image", layout + ":" + tag, bundle});
    ASSERT_EQ(unpacked.exit_code, 0) << unpacked.output;
    std::map<std::string, std::string> want =
        DescribeTree(bundle + "/rootfs", /*with_dir_mtimes=*/false, /*with_nlink=*/false);

    std::string chain = ChainOf(layout, tag);
    snapshots::GrpcSnapshotter snapshotter(Dial(snapshotd_.address()), "overlayfs");
    absl::StatusOr<snapshots::Info> top = snapshotter.Stat(Ctx(), chain);
    ASSERT_TRUE(top.ok()) << chain << ": " << top.status() << snapshotd_.ReadLog();
    EXPECT_EQ(top->kind, snapshots::Kind::kCommitted);
    std::string key = absl::StrCat("conformance-view-", views_);
    absl::StatusOr<std::vector<mount::Mount>> mounts = snapshotter.View(Ctx(), key, chain, {});
    ASSERT_TRUE(mounts.ok()) << mounts.status();
    std::string target = dir_.Join(absl::StrCat("mnt-", views_++));
    ASSERT_EQ(::mkdir(target.c_str(), 0755), 0);
    ASSERT_TRUE(mount::SystemMounter().MountAll(*mounts, target).ok());
    std::map<std::string, std::string> got =
        DescribeTree(target, /*with_dir_mtimes=*/false, /*with_nlink=*/false);
    EXPECT_TRUE(mount::SystemMounter().Unmount(target).ok());
    EXPECT_TRUE(snapshotter.Remove(Ctx(), key).ok());

    // The root directory's own line is the snapshot directory's and umoci's bundle's: only
    // what the image says below it is compared.
    want.erase(".");
    got.erase(".");
    for (const auto& [path, line] : want) {
      auto it = got.find(path);
      if (it == got.end()) {
        ADD_FAILURE() << "missing from berth's rootfs: " << path << " (" << line << ")";
      } else {
        EXPECT_EQ(it->second, line) << path;
      }
    }
    for (const auto& [path, line] : got) {
      EXPECT_EQ(want.count(path), 1u) << "in berth's rootfs, not umoci's: " << path << " ("
                                      << line << ")";
    }
    EXPECT_GT(want.size(), 0u);
  }

  // `layers` as the gzip OCI image `layout:tag` for linux/`arch`.
  void BuildImage(const std::string& layout, const std::string& tag,
                  const std::vector<TarBuilder>& layers, const std::string& arch) {
    NewImage(layout, tag, arch);
    for (const TarBuilder& layer : layers) {
      AddLayer(layout, tag, layer);
    }
    CommandResult gc = RunTool({"umoci", "gc", "--layout", layout});
    ASSERT_EQ(gc.exit_code, 0) << gc.output;
  }

  // An OCI index of linux/amd64, linux/arm64 and linux/arm/v7 images (`layout`:<arch> each,
  // each with its own /arch) pushed as "multi"; returns the index's digest.
  std::string PushMultiPlatformIndex(const std::string& layout) {
    nlohmann::json index = {{"schemaVersion", 2},
                            {"mediaType", "application/vnd.oci.image.index.v1+json"},
                            {"manifests", nlohmann::json::array()}};
    for (const Platform& platform : IndexPlatforms()) {
      TarBuilder tar;
      tar.File("arch", platform.arch + platform.variant + "\n");
      tar.Dir("common");
      tar.File("common/file", "the same in every image\n");
      BuildImage(layout, platform.arch, {tar}, platform.arch);
      nlohmann::json desc = TaggedDescriptor(layout, platform.arch);
      desc.erase("annotations");
      desc["platform"] = {{"os", "linux"}, {"architecture", platform.arch}};
      if (!platform.variant.empty()) {
        desc["platform"]["variant"] = platform.variant;
      }
      index["manifests"].push_back(desc);
    }
    // The index as a blob of the layout, tagged "multi" in index.json.
    const std::string index_text = index.dump();
    const std::string index_digest = Sha256Digest(index_text);
    EXPECT_TRUE(WriteFileAtomic(layout + "/blobs/sha256/" + index_digest.substr(7), index_text,
                                0644)
                    .ok());
    nlohmann::json top = nlohmann::json::parse(*ReadFile(layout + "/index.json"));
    top["manifests"].push_back(
        {{"mediaType", "application/vnd.oci.image.index.v1+json"},
         {"digest", index_digest},
         {"size", index_text.size()},
         {"annotations", {{"org.opencontainers.image.ref.name", "multi"}}}});
    EXPECT_TRUE(WriteFileAtomic(layout + "/index.json", top.dump(), 0644).ok());
    Push("oci:" + layout + ":multi", "multi", {"--multi-arch", "all"});
    return index_digest;
  }

  // The record berth made for `tag`, its target document from contentd, and the media types
  // of the manifest berth unpacked (the index's entry for this host when it is an index).
  struct Pulled {
    images::Image image;
    nlohmann::json manifest;
    std::string manifest_type;
  };
  Pulled ReadPulled(const std::string& tag) {
    Pulled pulled;
    images::GrpcImageStore images(Dial(address_));
    absl::StatusOr<images::Image> image = images.Get(Ctx(), Reference(tag));
    EXPECT_TRUE(image.ok()) << image.status();
    if (!image.ok()) {
      return pulled;
    }
    pulled.image = *image;
    content::GrpcContentStore content(Dial(contentd_.address()));
    absl::StatusOr<std::string> target = content::ReadBlob(content, Ctx(), image->target.digest);
    EXPECT_TRUE(target.ok()) << target.status();
    pulled.manifest = nlohmann::json::parse(target.ok() ? *target : "{}");
    pulled.manifest_type = image->target.media_type;
    return pulled;
  }

  testing::TempDir dir_;
  Registry registry_{dir_.path()};
  ImagedStack stack_{dir_.path()};
  const Contentd& contentd_ = stack_.contentd;
  const Snapshotd& snapshotd_ = stack_.snapshotd;
  const std::string& address_ = stack_.address;
  const DaemonProcess& imaged_ = stack_.imaged;
  int layers_ = 0;
  int views_ = 0;
};

// One image (SpecialLayers) in each transport shape: pushed as it is (OCI, gzip), recompressed
// with zstd, decompressed (skopeo --preserve-digests keeps the registry from compressing it),
// and converted to Docker schema2. Each unpacks to what umoci makes of the OCI/gzip original.
struct Shape {
  std::string name;
  std::string manifest_type;
  std::string layer_type;
};

class PullShapeTest : public PullConformanceTest,
                      public ::testing::WithParamInterface<Shape> {};

TEST_P(PullShapeTest, UnpackedRootfsMatchesUmoci) {
  const Shape& shape = GetParam();
  const std::string layout = dir_.Join("layout");
  BuildImage(layout, "special", SpecialLayers(), HostArch());
  if (shape.name == "gzip") {
    Push("oci:" + layout + ":special", shape.name);
  } else if (shape.name == "zstd") {
    Push("oci:" + layout + ":special", shape.name, {"--dest-compress-format", "zstd"});
  } else if (shape.name == "uncompressed") {
    std::string dir = dir_.Join("decompressed");
    CommandResult copied = RunTool({"skopeo", "copy", "-q", "--dest-decompress",
                                "oci:" + layout + ":special", "dir:" + dir});
    ASSERT_EQ(copied.exit_code, 0) << copied.output;
    Push("dir:" + dir, shape.name, {"--preserve-digests"});
  } else if (shape.name == "docker-schema2") {
    Push("oci:" + layout + ":special", shape.name, {"--format", "v2s2"});
  }

  CommandResult pull = Pull(shape.name);
  ASSERT_EQ(pull.exit_code, 0) << pull.output << imaged_.ReadLog();

  // What the registry served is the shape asked for: manifest and layer media types.
  Pulled pulled = ReadPulled(shape.name);
  EXPECT_EQ(pulled.manifest_type, shape.manifest_type);
  ASSERT_EQ(pulled.manifest["layers"].size(), 3u) << pulled.manifest.dump();
  for (const nlohmann::json& layer : pulled.manifest["layers"]) {
    EXPECT_EQ(layer["mediaType"], shape.layer_type) << pulled.manifest.dump();
  }
  ExpectRootfsMatchesUmoci(layout, "special");
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, PullShapeTest,
    ::testing::Values(
        Shape{"gzip", "application/vnd.oci.image.manifest.v1+json",
              "application/vnd.oci.image.layer.v1.tar+gzip"},
        Shape{"zstd", "application/vnd.oci.image.manifest.v1+json",
              "application/vnd.oci.image.layer.v1.tar+zstd"},
        Shape{"uncompressed", "application/vnd.oci.image.manifest.v1+json",
              "application/vnd.oci.image.layer.v1.tar"},
        Shape{"docker-schema2", "application/vnd.docker.distribution.manifest.v2+json",
              "application/vnd.docker.image.rootfs.diff.tar.gzip"}),
    [](const ::testing::TestParamInfo<Shape>& info) {
      std::string name = info.param.name;
      for (char& c : name) {
        if (c == '-') {
          c = '_';
        }
      }
      return name;
    });

TEST_F(PullConformanceTest, ThirtyTwoLayersWithWhiteoutsAndOpaqueDirectories) {
  const std::string layout = dir_.Join("layout");
  BuildImage(layout, "many", ManyLayers(), HostArch());
  Push("oci:" + layout + ":many", "many");
  CommandResult pull = Pull("many");
  ASSERT_EQ(pull.exit_code, 0) << pull.output << imaged_.ReadLog();
  EXPECT_EQ(ReadPulled("many").manifest["layers"].size(), 32u);
  ExpectRootfsMatchesUmoci(layout, "many");
}

// An OCI index of linux/amd64, linux/arm64 and linux/arm/v7 images, each with its own /arch:
// berth records the index, unpacks this host's image and downloads no other image's layer.
TEST_F(PullConformanceTest, MultiPlatformIndexUnpacksThisHostsImage) {
  const std::string layout = dir_.Join("layout");
  const std::string index_digest = PushMultiPlatformIndex(layout);
  const std::vector<Platform>& platforms = IndexPlatforms();
  const std::string host = HostArch();
  bool host_listed = false;
  for (const Platform& platform : platforms) {
    host_listed = host_listed || platform.arch == host;
  }
  ASSERT_TRUE(host_listed) << "this host's architecture " << host << " has no image here";

  CommandResult pull = Pull("multi");
  ASSERT_EQ(pull.exit_code, 0) << pull.output << imaged_.ReadLog();
  Pulled pulled = ReadPulled("multi");
  EXPECT_EQ(pulled.image.target.digest.ToString(), index_digest);
  EXPECT_EQ(pulled.manifest_type, "application/vnd.oci.image.index.v1+json");
  ExpectRootfsMatchesUmoci(layout, host);

  // The other images' layers were not fetched.
  content::GrpcContentStore content(Dial(contentd_.address()));
  for (const Platform& platform : platforms) {
    nlohmann::json manifest = LayoutJson(layout, TaggedDescriptor(layout, platform.arch)["digest"]);
    std::string layer = manifest["layers"][0]["digest"];
    absl::StatusOr<content::Info> info = content.GetInfo(Ctx(), *Digest::Parse(layer));
    if (platform.arch == host) {
      EXPECT_TRUE(info.ok()) << platform.arch << ": " << info.status();
    } else {
      EXPECT_EQ(info.status().code(), absl::StatusCode::kNotFound) << platform.arch;
    }
  }
}

// --all-platforms (as `ctr pull --all-platforms`): every manifest of the index, its config and
// its layers go into contentd, labelled so the record holds them, and the whole index can be
// pushed on; only the chosen platform's chain is unpacked (none with --no-unpack); --platform
// picks another one.
TEST_F(PullConformanceTest, AllPlatformsFetchesEveryImageAndUnpacksOnlyTheChosenOne) {
  const std::string layout = dir_.Join("layout");
  const std::string index_digest = PushMultiPlatformIndex(layout);
  const std::string host = HostArch();
  content::GrpcContentStore content(Dial(contentd_.address()));
  snapshots::GrpcSnapshotter snapshotter(Dial(snapshotd_.address()), "overlayfs");
  auto has_blob = [&](const std::string& digest) {
    return content.GetInfo(Ctx(), *Digest::Parse(digest)).ok();
  };
  auto has_chain = [&](const Platform& platform) {
    return snapshotter.Stat(Ctx(), ChainOf(layout, platform.arch)).ok();
  };
  auto pull = [&](std::vector<std::string> flags) {
    std::vector<std::string> argv = {"pull", Reference("multi"), "--insecure-registry",
                                     registry_.host()};
    argv.insert(argv.end(), flags.begin(), flags.end());
    CommandResult result = stack_.Berth(argv);
    EXPECT_EQ(result.exit_code, 0) << result.output << imaged_.ReadLog();
    return result.output;
  };

  // Every image stored, nothing unpacked; the index and each manifest carry their gc refs.
  pull({"--all-platforms", "--no-unpack"});
  for (const Platform& platform : IndexPlatforms()) {
    const std::string manifest_digest = TaggedDescriptor(layout, platform.arch)["digest"];
    nlohmann::json manifest = LayoutJson(layout, manifest_digest);
    absl::StatusOr<content::Info> info = content.GetInfo(Ctx(), *Digest::Parse(manifest_digest));
    ASSERT_TRUE(info.ok()) << platform.Name() << ": " << info.status();
    EXPECT_EQ(info->labels["containerd.io/gc.ref.content.config"], manifest["config"]["digest"]);
    EXPECT_EQ(info->labels["containerd.io/gc.ref.content.l.0"], manifest["layers"][0]["digest"]);
    EXPECT_TRUE(has_blob(manifest["config"]["digest"])) << platform.Name();
    EXPECT_TRUE(has_blob(manifest["layers"][0]["digest"])) << platform.Name();
    EXPECT_FALSE(has_chain(platform)) << platform.Name();
  }
  absl::StatusOr<content::Info> index = content.GetInfo(Ctx(), *Digest::Parse(index_digest));
  ASSERT_TRUE(index.ok()) << index.status();
  for (size_t i = 0; i < IndexPlatforms().size(); ++i) {
    EXPECT_EQ(index->labels[absl::StrCat("containerd.io/gc.ref.content.m.", i)],
              TaggedDescriptor(layout, IndexPlatforms()[i].arch)["digest"]);
  }
  EXPECT_EQ(ReadPulled("multi").image.target.digest.ToString(), index_digest);
  // So the whole index can be pushed on (a one-platform pull cannot: its blobs are missing).
  const std::string copy = absl::StrCat(registry_.host(), "/conformance/copy:multi");
  CommandResult pushed =
      stack_.Berth({"push", Reference("multi"), copy, "--insecure-registry", registry_.host()});
  EXPECT_EQ(pushed.exit_code, 0) << pushed.output << imaged_.ReadLog();
  CommandResult raw = RunTool({"skopeo", "inspect", "--raw", "--tls-verify=false",
                               "docker://" + copy});
  EXPECT_EQ(Sha256Digest(raw.output), index_digest) << raw.output;

  // --platform: that image is unpacked (its layer already there: reported exists), no other.
  const Platform& arm = IndexPlatforms()[2];
  std::string output = pull({"--platform", arm.Name()});
  EXPECT_TRUE(absl::StrContains(output, "exists")) << output;
  for (const Platform& platform : IndexPlatforms()) {
    EXPECT_EQ(has_chain(platform), platform.arch == arm.arch) << platform.Name();
  }
  ExpectRootfsMatchesUmoci(layout, arm.arch);

  // --all-platforms with unpacking: this host's image is the one unpacked.
  pull({"--all-platforms"});
  for (const Platform& platform : IndexPlatforms()) {
    EXPECT_EQ(has_chain(platform), platform.arch == arm.arch || platform.arch == host)
        << platform.Name();
  }
  ExpectRootfsMatchesUmoci(layout, host);
}

// containerd's ctr, pointed at imaged's socket, lists the pulled images with their digests and
// tags one; the new name is a record of imaged's.
TEST_F(PullConformanceTest, CtrListsAndTagsPulledImages) {
  const std::string layout = dir_.Join("layout");
  BuildImage(layout, "special", SpecialLayers(), HostArch());
  Push("oci:" + layout + ":special", "one");
  Push("oci:" + layout + ":special", "two", {"--format", "v2s2"});
  ASSERT_EQ(Pull("one").exit_code, 0) << imaged_.ReadLog();
  ASSERT_EQ(Pull("two").exit_code, 0) << imaged_.ReadLog();
  Pulled one = ReadPulled("one");
  Pulled two = ReadPulled("two");

  CommandResult ls = Ctr(address_, "default", {"images", "ls"});
  ASSERT_EQ(ls.exit_code, 0) << ls.output;
  for (const Pulled& pulled : {one, two}) {
    EXPECT_TRUE(absl::StrContains(ls.output, pulled.image.name)) << ls.output;
    EXPECT_TRUE(absl::StrContains(ls.output, pulled.image.target.digest.ToString())) << ls.output;
    EXPECT_TRUE(absl::StrContains(ls.output, pulled.manifest_type)) << ls.output;
  }

  const std::string copy = Reference("copy");
  CommandResult tag = Ctr(address_, "default", {"images", "tag", one.image.name, copy});
  ASSERT_EQ(tag.exit_code, 0) << tag.output << imaged_.ReadLog();
  images::GrpcImageStore images(Dial(address_));
  absl::StatusOr<images::Image> tagged = images.Get(Ctx(), copy);
  ASSERT_TRUE(tagged.ok()) << tagged.status();
  EXPECT_EQ(tagged->target.digest, one.image.target.digest);
  CommandResult names = Ctr(address_, "default", {"images", "ls", "-q"});
  EXPECT_TRUE(absl::StrContains(names.output, copy)) << names.output;
  // check lists every record with its type and digest, complete: imaged serves contentd's
  // Content service on its own socket too.
  CommandResult check = Ctr(address_, "default", {"images", "check"});
  for (const Pulled& pulled : {one, two}) {
    bool listed = false;
    for (absl::string_view row : absl::StrSplit(check.output, '\n')) {
      listed = listed || (absl::StartsWith(row, pulled.image.name + " ") &&
                          absl::StrContains(row, pulled.manifest_type) &&
                          absl::StrContains(row, pulled.image.target.digest.ToString()) &&
                          absl::StrContains(row, " complete ("));  // not "incomplete"
    }
    EXPECT_TRUE(listed) << pulled.image.name << check.output;
  }
}

// containerd's ctr sees what a pull left in berth's daemons: every blob through contentd's
// Content service, the chain through snapshotd's Snapshots service; and a containerd with both
// as proxy plugins takes them as they are.
TEST_F(PullConformanceTest, ContainerdSeesPulledBlobsAndSnapshots) {
  const std::string layout = dir_.Join("layout");
  BuildImage(layout, "special", SpecialLayers(), HostArch());
  Push("oci:" + layout + ":special", "special");
  ASSERT_EQ(Pull("special").exit_code, 0) << imaged_.ReadLog();
  nlohmann::json manifest = LayoutJson(layout, TaggedDescriptor(layout, "special")["digest"]);
  std::vector<std::string> blobs = {TaggedDescriptor(layout, "special")["digest"],
                                    manifest["config"]["digest"]};
  for (const nlohmann::json& layer : manifest["layers"]) {
    blobs.push_back(layer["digest"]);
  }
  CommandResult content = Ctr(contentd_.address(), "default", {"content", "ls"});
  ASSERT_EQ(content.exit_code, 0) << content.output;
  for (const std::string& digest : blobs) {
    EXPECT_TRUE(absl::StrContains(content.output, digest)) << digest << content.output;
  }

  CommandResult snapshots =
      Ctr(snapshotd_.address(), "default", {"snapshots", "--snapshotter", "overlayfs", "ls"});
  ASSERT_EQ(snapshots.exit_code, 0) << snapshots.output;
  // Every prefix of the chain: containerd's ChainIDs, bottom up.
  std::vector<std::string> chain_ids;
  nlohmann::json config = LayoutJson(layout, manifest["config"]["digest"]);
  nlohmann::json diff_ids = config["rootfs"]["diff_ids"];
  for (size_t n = 1; n <= diff_ids.size(); ++n) {
    nlohmann::json prefix = config;
    prefix["rootfs"]["diff_ids"] = nlohmann::json(diff_ids.begin(), diff_ids.begin() + n);
    chain_ids.push_back(TopChainId(prefix));
  }
  for (const std::string& id : chain_ids) {
    EXPECT_TRUE(absl::StrContains(snapshots.output, id)) << id << snapshots.output;
  }

  // A containerd with contentd and snapshotd as its proxy plugins pulls the same image and
  // takes the blobs berth pulled: none comes from the registry again; it lists every blob and
  // the chain then. (Before its own pull it lists neither: containerd's metadata lists only
  // what it recorded itself.) Its snapshots are its own: containerd's metadata snapshotter
  // names them "<namespace>/<n>/<chain id>" in the backing snapshotter, so it applies the
  // layers again (from contentd) beside berth's chain, which stays as it was.
  Containerd::Options options;
  options.content_proxy_address = contentd_.address();
  options.snapshot_proxy_address = snapshotd_.address();
  options.disable_gc = true;
  Containerd containerd(dir_.path(), options);
  ASSERT_TRUE(containerd.Start().ok()) << containerd.ReadLog();
  const int blob_requests = registry_.CountRequests("/blobs/");
  CommandResult pull = Ctr(containerd.address(), "default",
                           {"images", "pull", "--plain-http", "--snapshotter",
                            options.snapshot_proxy_name, Reference("special")});
  ASSERT_EQ(pull.exit_code, 0) << pull.output << containerd.ReadLog();
  EXPECT_EQ(registry_.CountRequests("/blobs/"), blob_requests) << registry_.ReadLog();
  CommandResult check = Ctr(containerd.address(), "default", {"images", "check"});
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_TRUE(absl::StrContains(check.output, "complete")) << check.output;
  content = Ctr(containerd.address(), "default", {"content", "ls"});
  for (const std::string& digest : blobs) {
    EXPECT_TRUE(absl::StrContains(content.output, digest)) << digest << content.output;
  }
  CommandResult proxied = Ctr(containerd.address(), "default",
                              {"snapshots", "--snapshotter", options.snapshot_proxy_name, "ls"});
  for (const std::string& id : chain_ids) {
    EXPECT_TRUE(absl::StrContains(proxied.output, id)) << id << proxied.output;
  }
  CommandResult after =
      Ctr(snapshotd_.address(), "default", {"snapshots", "--snapshotter", "overlayfs", "ls"});
  for (const std::string& id : chain_ids) {
    EXPECT_TRUE(absl::StrContains(after.output, "\n" + id + " ")) << id << after.output;
    EXPECT_TRUE(absl::StrContains(after.output, "/" + id + " ")) << id << after.output;
  }
  EXPECT_EQ(WEXITSTATUS(containerd.Stop()), 0) << containerd.ReadLog();
}

}  // namespace berth::integration
