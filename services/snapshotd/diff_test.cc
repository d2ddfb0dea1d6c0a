// LayerApplier and WalkingDiffer over a real local content store: compressed and plain layers
// in OCI and Docker media types, the uncompressed digest check, bad blobs, and round trips
// (apply A, change it, diff, apply the diff onto a copy of A: the same tree). Needs root.

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include <fstream>
#include <functional>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/archive/compression.h"
#include "lib/content/content_store.h"
#include "lib/content/memory_content_store.h"
#include "lib/testing/testing.h"
#include "services/snapshotd/archive/testutil.h"
#include "services/snapshotd/diff_applier.h"
#include "services/snapshotd/walking_differ.h"

namespace berth::snapshotd {
namespace {

using testutil::DescribeTree;
using testutil::TarBuilder;
using testutil::TarEntry;

constexpr char kOciTar[] = "application/vnd.oci.image.layer.v1.tar";
constexpr char kOciGzip[] = "application/vnd.oci.image.layer.v1.tar+gzip";
constexpr char kOciZstd[] = "application/vnd.oci.image.layer.v1.tar+zstd";
constexpr char kDockerGzip[] = "application/vnd.docker.image.rootfs.diff.tar.gzip";

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
}

std::string Compress(const std::string& data, ::berth::archive::Compression c) {
  StringSink out;
  auto sink = ::berth::archive::NewCompressingSink(out, c);
  EXPECT_TRUE(sink.ok());
  EXPECT_TRUE((*sink)->Write(data).ok());
  EXPECT_TRUE((*sink)->Close().ok());
  return out.data();
}

std::vector<mount::Mount> Bind(const std::string& dir) {
  return {mount::Mount{"bind", dir, "", {"rbind", "rw"}}};
}

class DiffTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = content::NewMemoryContentStore();
    ctx_.ns = "default";
  }

  std::string NewDir(const std::string& name) {
    std::string path = dir_.Join(name);
    EXPECT_EQ(mkdir(path.c_str(), 0755), 0);
    return path;
  }

  oci::Descriptor Put(const std::string& blob, const std::string& media_type) {
    oci::Descriptor desc;
    desc.media_type = media_type;
    desc.digest = Sha256Of(blob);
    desc.size = static_cast<int64_t>(blob.size());
    EXPECT_TRUE(content::WriteBlob(*store_, ctx_, absl::StrCat("put-", desc.digest.hex()), blob,
                                   desc.digest, {})
                    .ok());
    return desc;
  }

  static LayerApplierOptions Native() {
    LayerApplierOptions options;
    options.whiteouts = LayerApplierOptions::Whiteouts::kNative;
    return options;
  }

  // A fresh directory `name` holding `base` applied by `applier`.
  std::string BaseCopy(LayerApplier& applier, const oci::Descriptor& base,
                       const std::string& name) {
    std::string dir = NewDir(name);
    absl::StatusOr<oci::Descriptor> applied = applier.Apply(ctx_, base, Bind(dir));
    EXPECT_TRUE(applied.ok()) << name << ": " << applied.status();
    return dir;
  }

  std::string ReadBlob(const Digest& digest) {
    auto data = content::ReadBlob(*store_, ctx_, digest);
    EXPECT_TRUE(data.ok()) << data.status();
    return data.ok() ? *data : std::string();
  }

  // A base layer with a bit of everything.
  static std::string BaseLayer() {
    TarBuilder tar;
    tar.Dir("etc", 0755);
    tar.File("etc/passwd", "root:x:0:0\n");
    TarEntry& g = tar.File("etc/group", "root:x:0:\n", 0640);
    g.gid = 42;
    g.mtime_nsec = 250;
    tar.Dir("bin");
    tar.File("bin/sh", std::string(200000, 's'), 0755);
    tar.Hardlink("bin/bash", "bin/sh");
    tar.Dir("usr");
    tar.Dir("usr/lib");
    tar.Dir("var");
    tar.Dir("run");
    tar.Dir("dev");
    tar.Symlink("usr/bin", "../bin");
    TarEntry& s = tar.File("usr/lib/suid", "x", 04755);
    s.xattrs["user.note"] = "kept";
    tar.Dir("var/old");
    tar.File("var/old/a", "a");
    tar.File("var/old/b", "b");
    tar.Dir("opaque");
    tar.File("opaque/lower", "lower");
    tar.Node("run/fifo", AE_IFIFO, 0, 0, 0600);
    tar.Node("dev/null", AE_IFCHR, 1, 3, 0666);
    tar.File("remove-me", "bye");
    return tar.Build();
  }

  // The changes the round trips make (through `root`, a merged or copied tree).
  static void Change(const std::string& root) {
    WriteFile(root + "/etc/passwd", "root:x:0:0\nuser:x:1000:1000\n");
    WriteFile(root + "/new-file", "new");
    ASSERT_EQ(chmod((root + "/etc/group").c_str(), 0600), 0);
    ASSERT_EQ(chown((root + "/bin/sh").c_str(), 7, 7), 0);
    ASSERT_EQ(unlink((root + "/remove-me").c_str()), 0);
    ASSERT_TRUE(testing::RemoveTree(root + "/var/old"));
    ASSERT_TRUE(testing::RemoveTree(root + "/opaque"));
    ASSERT_EQ(mkdir((root + "/opaque").c_str(), 0700), 0);
    WriteFile(root + "/opaque/upper", "upper");
    ASSERT_EQ(symlink("/etc/passwd", (root + "/etc/link").c_str()), 0);
    ASSERT_EQ(mkdir((root + "/newdir").c_str(), 0711), 0);
    ASSERT_EQ(mkfifo((root + "/newdir/fifo").c_str(), 0644), 0);
    ASSERT_EQ(link((root + "/new-file").c_str(), (root + "/newdir/hard").c_str()), 0);
  }

  testing::TempDir dir_;
  std::unique_ptr<content::ContentStore> store_;
  Context ctx_;
};

TEST_F(DiffTest, AppliesEveryCompressionAndMediaType) {
  const std::string tar = BaseLayer();
  const Digest diff_id = Sha256Of(tar);
  struct Case {
    ::berth::archive::Compression compression;
    std::string media_type;
    std::string want_type;
  };
  std::vector<Case> cases = {
      {::berth::archive::Compression::kNone, kOciTar, kOciTar},
      {::berth::archive::Compression::kGzip, kOciGzip, kOciTar},
      {::berth::archive::Compression::kZstd, kOciZstd, kOciTar},
      {::berth::archive::Compression::kGzip, kDockerGzip,
       "application/vnd.docker.image.rootfs.diff.tar"},
      {::berth::archive::Compression::kNone, "application/vnd.docker.image.rootfs.diff.tar",
       "application/vnd.docker.image.rootfs.diff.tar"},
      {::berth::archive::Compression::kGzip,
       "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
       "application/vnd.oci.image.layer.nondistributable.v1.tar"},
  };
  std::string reference;
  for (size_t i = 0; i < cases.size(); ++i) {
    for (bool pipeline : {true, false}) {
      const Case& c = cases[i];
      oci::Descriptor desc = Put(Compress(tar, c.compression), c.media_type);
      desc.annotations[kUncompressedLabel] = diff_id.ToString();
      std::string root = NewDir(absl::StrCat("apply-", i, pipeline ? "-p" : ""));
      LayerApplierOptions options;
      options.pipeline = pipeline;
      LayerApplier applier(*store_, options);
      absl::StatusOr<oci::Descriptor> out = applier.Apply(ctx_, desc, Bind(root));
      ASSERT_TRUE(out.ok()) << c.media_type << ": " << out.status();
      EXPECT_EQ(out->digest, diff_id);
      EXPECT_EQ(out->size, static_cast<int64_t>(tar.size()));
      EXPECT_EQ(out->media_type, c.want_type);
      auto described = DescribeTree(root);
      std::string flat;
      for (const auto& [k, v] : described) {
        if (k != ".") {
          absl::StrAppend(&flat, k, " ", v, "\n");
        }
      }
      if (reference.empty()) {
        reference = flat;
      }
      EXPECT_EQ(flat, reference) << c.media_type;
    }
  }
}

TEST_F(DiffTest, UncompressedDigestMismatchIsFailedPrecondition) {
  oci::Descriptor desc = Put(Compress(BaseLayer(), ::berth::archive::Compression::kGzip), kOciGzip);
  desc.annotations[kUncompressedLabel] = Sha256Of("something else").ToString();
  LayerApplier applier(*store_);
  absl::StatusOr<oci::Descriptor> out = applier.Apply(ctx_, desc, Bind(NewDir("root")));
  EXPECT_EQ(out.status().code(), absl::StatusCode::kFailedPrecondition) << out.status();
  EXPECT_NE(out.status().message().find("does not match"), std::string::npos);
}

TEST_F(DiffTest, BadLayersAreClearErrors) {
  LayerApplier applier(*store_);
  // Not a tar (gzip of text).
  oci::Descriptor junk = Put(Compress(std::string(5000, 'j'), ::berth::archive::Compression::kGzip),
                             kOciGzip);
  auto out = applier.Apply(ctx_, junk, Bind(NewDir("junk")));
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument) << out.status();
  // Truncated gzip.
  std::string gz = Compress(BaseLayer(), ::berth::archive::Compression::kGzip);
  oci::Descriptor cut = Put(gz.substr(0, gz.size() / 2), kOciGzip);
  out = applier.Apply(ctx_, cut, Bind(NewDir("cut")));
  EXPECT_EQ(out.status().code(), absl::StatusCode::kDataLoss) << out.status();
  // Truncated zstd.
  std::string zs = Compress(BaseLayer(), ::berth::archive::Compression::kZstd);
  oci::Descriptor zcut = Put(zs.substr(0, zs.size() / 2), kOciZstd);
  out = applier.Apply(ctx_, zcut, Bind(NewDir("zcut")));
  EXPECT_EQ(out.status().code(), absl::StatusCode::kDataLoss) << out.status();
  // Truncated plain tar.
  std::string tar = BaseLayer();
  oci::Descriptor tcut = Put(tar.substr(0, 100000), kOciTar);  // inside bin/sh's data
  out = applier.Apply(ctx_, tcut, Bind(NewDir("tcut")));
  EXPECT_EQ(out.status().code(), absl::StatusCode::kDataLoss) << out.status();
  // Unsupported media type.
  oci::Descriptor odd = Put(tar, "application/vnd.oci.image.layer.v1.tar+gzip+encrypted");
  out = applier.Apply(ctx_, odd, Bind(NewDir("odd")));
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument) << out.status();
  // Missing blob.
  oci::Descriptor missing;
  missing.media_type = kOciTar;
  missing.digest = Sha256Of("missing");
  out = applier.Apply(ctx_, missing, Bind(NewDir("missing")));
  EXPECT_EQ(out.status().code(), absl::StatusCode::kNotFound) << out.status();
  // Read-only mounts have no writable dir.
  oci::Descriptor good = Put(tar, kOciTar);
  out = applier.Apply(ctx_, good, {mount::Mount{"bind", NewDir("ro"), "", {"rbind", "ro"}}});
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument) << out.status();
}

TEST_F(DiffTest, RunawayLayerIsStopped) {
  TarBuilder tar;
  tar.File("zeros", std::string(8 << 20, '\0'));
  oci::Descriptor desc = Put(Compress(tar.Build(), ::berth::archive::Compression::kGzip), kOciGzip);
  LayerApplierOptions options;
  options.max_uncompressed_size = 4 << 20;
  LayerApplier applier(*store_, options);
  auto out = applier.Apply(ctx_, desc, Bind(NewDir("root")));
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted) << out.status();
}

TEST_F(DiffTest, DevicesForbiddenByConfig) {
  oci::Descriptor desc = Put(BaseLayer(), kOciTar);
  LayerApplierOptions options;
  options.allow_devices = false;
  LayerApplier applier(*store_, options);
  auto out = applier.Apply(ctx_, desc, Bind(NewDir("root")));
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument) << out.status();
}

// Walking two trees: lower = A, upper = a copy of A with changes; the diff applied (native
// whiteouts) onto another copy of A gives the upper tree.
TEST_F(DiffTest, WalkingRoundTrip) {
  oci::Descriptor base = Put(BaseLayer(), kOciTar);
  LayerApplier applier(*store_, Native());
  std::string lower = BaseCopy(applier, base, "lower");
  std::string upper = BaseCopy(applier, base, "upper");
  std::string copy = BaseCopy(applier, base, "copy");
  Change(upper);

  WalkingDiffer differ(*store_);
  for (const std::string& media_type : {std::string(), std::string(kOciTar),
                                        std::string(kOciZstd)}) {
    diff::CompareOptions options;
    options.media_type = media_type;
    options.labels["test"] = "yes";
    absl::StatusOr<oci::Descriptor> layer = differ.Compare(ctx_, Bind(lower), Bind(upper), options);
    ASSERT_TRUE(layer.ok()) << layer.status();
    EXPECT_EQ(layer->media_type, media_type.empty() ? kOciGzip : media_type);
    auto info = store_->GetInfo(ctx_, layer->digest);
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info->labels["test"], "yes");
    ASSERT_EQ(info->labels.count(kUncompressedLabel), 1u);

    std::string target = NewDir(absl::StrCat("target", media_type.size()));
    ASSERT_TRUE(applier.Apply(ctx_, base, Bind(target)).ok());
    absl::StatusOr<oci::Descriptor> applied = applier.Apply(ctx_, *layer, Bind(target));
    ASSERT_TRUE(applied.ok()) << applied.status();
    EXPECT_EQ(applied->digest.ToString(), info->labels[kUncompressedLabel]);
    auto want = DescribeTree(upper);
    auto got = DescribeTree(target);
    want.erase(".");
    got.erase(".");
    EXPECT_EQ(got, want);
  }
  // No changes: an empty layer.
  absl::StatusOr<oci::Descriptor> none =
      differ.Compare(ctx_, Bind(lower), Bind(copy), diff::CompareOptions{kOciTar, "", {}});
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(ReadBlob(none->digest), std::string(10240, '\0'));
}

// Each kind of change the walk must see, alone: xattrs changed with nothing else (same mtime,
// size and content), a new device node, a file replaced by a directory and a directory by a
// file, a new hardlink pair, and a new link to a file of the lower tree. The diff applied onto
// another copy of the lower tree gives the upper tree, hardlink identity included.
TEST_F(DiffTest, WalkingSeesEveryKindOfChange) {
  oci::Descriptor base = Put(BaseLayer(), kOciTar);
  LayerApplier applier(*store_, Native());
  std::string lower = BaseCopy(applier, base, "lower");
  std::string upper = BaseCopy(applier, base, "upper");
  auto same_times = [](const std::string& path, const std::function<void()>& change) {
    struct stat st;
    ASSERT_EQ(lstat(path.c_str(), &st), 0);
    change();
    struct timespec times[2] = {st.st_atim, st.st_mtim};
    ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW), 0);
  };
  same_times(upper + "/usr/lib/suid", [&] {
    ASSERT_EQ(lsetxattr((upper + "/usr/lib/suid").c_str(), "user.note", "changed", 7, 0), 0);
  });
  same_times(upper + "/etc/passwd", [&] {
    ASSERT_EQ(lsetxattr((upper + "/etc/passwd").c_str(), "user.added", "1", 1, 0), 0);
  });
  same_times(upper + "/dev", [&] {
    ASSERT_EQ(mknod((upper + "/dev/zero").c_str(), S_IFCHR | 0666, makedev(1, 5)), 0);
  });
  ASSERT_EQ(unlink((upper + "/etc/group").c_str()), 0);
  ASSERT_EQ(mkdir((upper + "/etc/group").c_str(), 0750), 0);
  WriteFile(upper + "/etc/group/inside", "inside");
  ASSERT_TRUE(testing::RemoveTree(upper + "/var/old"));
  WriteFile(upper + "/var/old", "now a file");
  WriteFile(upper + "/h1", "linked");
  ASSERT_EQ(link((upper + "/h1").c_str(), (upper + "/h2").c_str()), 0);
  ASSERT_EQ(link((upper + "/bin/sh").c_str(), (upper + "/sh-link").c_str()), 0);

  WalkingDiffer differ(*store_);
  absl::StatusOr<oci::Descriptor> layer =
      differ.Compare(ctx_, Bind(lower), Bind(upper), diff::CompareOptions{kOciTar, "", {}});
  ASSERT_TRUE(layer.ok()) << layer.status();
  ASSERT_TRUE(applier.Apply(ctx_, *layer, Bind(lower)).ok());
  auto want = DescribeTree(upper);
  auto got = DescribeTree(lower);
  want.erase(".");
  got.erase(".");
  EXPECT_EQ(got, want);
  // The comparison covers what was changed (it would not pass on the unchanged tree).
  EXPECT_THAT(want["usr/lib/suid"], ::testing::HasSubstr("user.note=changed"));
  EXPECT_THAT(want["sh-link"], ::testing::HasSubstr("same-inode-as=bin/bash"));
  EXPECT_THAT(want["h2"], ::testing::HasSubstr("same-inode-as=h1"));
  EXPECT_THAT(want["dev/zero"], ::testing::HasSubstr("rdev=1,5"));
}

// overlay: A applied into a lower dir; the changes made through a real overlay mount; the diff
// read from the upperdir (the fast path) and applied natively onto a copy of A equals the
// merged view; applied in overlay mode into a fresh upperdir it mounts to the same view.
TEST_F(DiffTest, OverlayRoundTrip) {
  oci::Descriptor base = Put(Compress(BaseLayer(), ::berth::archive::Compression::kGzip), kOciGzip);
  LayerApplierOptions overlay_opts;
  overlay_opts.whiteouts = LayerApplierOptions::Whiteouts::kOverlay;
  LayerApplier overlay_applier(*store_, overlay_opts);
  std::string lower = NewDir("lower");
  ASSERT_TRUE(overlay_applier.Apply(ctx_, base, Bind(lower)).ok());
  std::string upperdir = NewDir("upper");
  std::string work = NewDir("work");
  std::string merged = NewDir("merged");
  std::vector<mount::Mount> upper = {mount::Mount{
      "overlay", "overlay", "",
      {"lowerdir=" + lower, "upperdir=" + upperdir, "workdir=" + work}}};
  ASSERT_TRUE(mount::SystemMounter().MountAll(upper, merged).ok());
  Change(merged);
  // Without link counts: chown of bin/sh copied it up, which breaks its link to bin/bash, yet
  // the merged view still reports the lower inode's count (2) for bin/bash. Which names share
  // an inode is still compared.
  auto want = DescribeTree(merged, true, /*with_nlink=*/false);
  ASSERT_TRUE(mount::SystemMounter().Unmount(merged).ok());
  want.erase(".");

  WalkingDiffer differ(*store_);
  absl::StatusOr<oci::Descriptor> layer =
      differ.Compare(ctx_, {mount::Mount{"bind", lower, "", {"rbind", "ro"}}}, upper, {});
  ASSERT_TRUE(layer.ok()) << layer.status();

  // Native onto a copy of A.
  LayerApplierOptions native;
  native.whiteouts = LayerApplierOptions::Whiteouts::kNative;
  LayerApplier native_applier(*store_, native);
  std::string copy = NewDir("copy");
  ASSERT_TRUE(native_applier.Apply(ctx_, base, Bind(copy)).ok());
  ASSERT_TRUE(native_applier.Apply(ctx_, *layer, Bind(copy)).ok());
  auto got = DescribeTree(copy, true, /*with_nlink=*/false);
  got.erase(".");
  EXPECT_EQ(got, want);

  // Overlay mode into a fresh upperdir (auto: the mount is an overlay), then mounted.
  std::string upper2 = NewDir("upper2");
  std::string work2 = NewDir("work2");
  std::vector<mount::Mount> upper2_mounts = {mount::Mount{
      "overlay", "overlay", "",
      {"lowerdir=" + lower, "upperdir=" + upper2, "workdir=" + work2}}};
  LayerApplier auto_applier(*store_);
  ASSERT_TRUE(auto_applier.Apply(ctx_, *layer, upper2_mounts).ok());
  std::string merged2 = NewDir("merged2");
  ASSERT_TRUE(mount::SystemMounter().MountAll(upper2_mounts, merged2).ok());
  auto got2 = DescribeTree(merged2, true, /*with_nlink=*/false);
  ASSERT_TRUE(mount::SystemMounter().Unmount(merged2).ok());
  got2.erase(".");
  EXPECT_EQ(got2, want);

  // The generic walk (overlay upper mounted read-only in a scratch dir) agrees.
  WalkingDifferOptions wopts;
  wopts.scratch_dir = NewDir("scratch");
  WalkingDiffer walker(*store_, wopts);
  absl::StatusOr<oci::Descriptor> walked = walker.Compare(ctx_, Bind(lower), upper2_mounts, {});
  ASSERT_TRUE(walked.ok()) << walked.status();  // fast path again (same lowerdirs)
  std::string copy_walked = NewDir("copy-walked");
  ASSERT_TRUE(native_applier.Apply(ctx_, base, Bind(copy_walked)).ok());
  ASSERT_TRUE(native_applier.Apply(ctx_, *walked, Bind(copy_walked)).ok());
  auto got_walked = DescribeTree(copy_walked, true, /*with_nlink=*/false);
  got_walked.erase(".");
  EXPECT_EQ(got_walked, want);
  std::string base_copy = NewDir("base-copy");
  ASSERT_TRUE(native_applier.Apply(ctx_, base, Bind(base_copy)).ok());
  // lower given as an overlay of one lowerdir with another path: not the upper's lowers, so
  // both trees are mounted and walked.
  absl::StatusOr<oci::Descriptor> generic =
      walker.Compare(ctx_, Bind(base_copy), upper2_mounts, {});
  ASSERT_TRUE(generic.ok()) << generic.status();
  std::string copy3 = NewDir("copy3");
  ASSERT_TRUE(native_applier.Apply(ctx_, base, Bind(copy3)).ok());
  ASSERT_TRUE(native_applier.Apply(ctx_, *generic, Bind(copy3)).ok());
  auto got3 = DescribeTree(copy3, true, /*with_nlink=*/false);
  got3.erase(".");
  EXPECT_EQ(got3, want);
  int fd = open(wopts.scratch_dir.c_str(), O_RDONLY | O_DIRECTORY);
  auto left = archive::ListDir(fd);
  close(fd);
  ASSERT_TRUE(left.ok());
  EXPECT_TRUE(left->empty()) << "scratch mount points left behind";
}

}  // namespace
}  // namespace berth::snapshotd
