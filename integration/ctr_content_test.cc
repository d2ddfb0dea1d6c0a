// containerd's own `ctr content ...` commands pointed straight at contentd's socket. Every case
// also runs against a real containerd as the reference: where the two disagree, the failure says
// which backend it was.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <iostream>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "integration/harness.h"
#include "lib/testing/testing.h"

namespace berth::integration {
namespace {

using ::berth::testing::Process;
using ::berth::testing::TempDir;

constexpr char kNamespace[] = "ctr-content-test";

enum class Backend { kContentd, kContainerd };

std::string BackendName(const ::testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::kContentd ? "contentd" : "containerd";
}

// First column of each line of ctr's table output, header skipped.
std::vector<std::string> FirstColumn(const std::string& output) {
  std::vector<std::string> out;
  bool header = true;
  for (absl::string_view line : absl::StrSplit(output, '\n', absl::SkipEmpty())) {
    if (header) {
      header = false;
      continue;
    }
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (!fields.empty()) {
      out.emplace_back(fields[0]);
    }
  }
  return out;
}

// The LABELS column of `ctr content ls` for `digest` ("-" for none), or "" if not listed.
std::string LabelsColumn(const std::string& ls_output, const std::string& digest) {
  for (absl::string_view line : absl::StrSplit(ls_output, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> fields = absl::StrSplit(line, '\t', absl::SkipEmpty());
    if (!fields.empty() && fields.front() == digest) {
      return std::string(absl::StripAsciiWhitespace(fields.back()));
    }
  }
  return "";
}

std::set<std::string> SplitLabels(absl::string_view text) {
  std::set<std::string> out;
  for (absl::string_view label : absl::StrSplit(absl::StripAsciiWhitespace(text), ',',
                                                absl::SkipEmpty())) {
    out.emplace(label);
  }
  return out;
}

class CtrContentTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Backend::kContentd) {
      contentd_ = std::make_unique<Contentd>(dir_.path(), Contentd::Options{});
      absl::Status status = contentd_->Start();
      ASSERT_TRUE(status.ok()) << status;
      address_ = contentd_->address();
      blobs_dir_ = contentd_->root() + "/blobs";
    } else {
      Containerd::Options options;
      options.disable_gc = true;  // a blob nothing references would be collected mid-test
      containerd_ = std::make_unique<Containerd>(dir_.path(), options);
      absl::Status status = containerd_->Start();
      ASSERT_TRUE(status.ok()) << status;
      address_ = containerd_->address();
      blobs_dir_ = containerd_->root() + "/io.containerd.content.v1.content/blobs";
    }
  }

  void TearDown() override {
    if (contentd_ != nullptr && contentd_->running()) {
      int status = contentd_->Stop();
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
          << "contentd exit status " << status << "\n" << contentd_->ReadLog();
    }
    if (containerd_ != nullptr) {
      containerd_->Stop();
    }
    if (HasFailure()) {
      std::cerr << "daemon log:\n" << DaemonLog() << "\n";
    }
  }

  std::string DaemonLog() const {
    return contentd_ ? contentd_->ReadLog() : containerd_ ? containerd_->ReadLog() : "";
  }

  CommandResult Run(const std::vector<std::string>& args, const std::string& ns = kNamespace) {
    return Ctr(address_, ns, args);
  }

  // `ctr content ingest [flags] ref < file-with-data`.
  CommandResult Ingest(const std::string& ref, const std::string& data,
                       const std::vector<std::string>& flags = {}) {
    std::string file = dir_.Join(absl::StrCat("data-", ++files_));
    {
      std::ofstream out(file, std::ios::binary);
      out << data;
    }
    std::string cmd = absl::StrCat("exec ctr --address ", address_, " -n ", kNamespace,
                                   " content ingest");
    for (const std::string& flag : flags) {
      absl::StrAppend(&cmd, " ", flag);
    }
    absl::StrAppend(&cmd, " ", ref, " < ", file);
    CommandResult result;
    result.output = testing::RunCommand(cmd, &result.exit_code);
    return result;
  }

  std::vector<std::string> ListDigests(const std::string& ns = kNamespace) {
    CommandResult ls = Run({"content", "ls", "-q"}, ns);
    EXPECT_EQ(ls.exit_code, 0) << ls.output;
    return absl::StrSplit(ls.output, '\n', absl::SkipEmpty());
  }

  std::vector<std::string> ActiveRefs() {
    CommandResult active = Run({"content", "active"});
    EXPECT_EQ(active.exit_code, 0) << active.output;
    return FirstColumn(active.output);
  }

  bool BlobFileExists(const std::string& digest) {
    std::string path = absl::StrCat(blobs_dir_, "/sha256/", absl::StripPrefix(digest, "sha256:"));
    struct stat st;
    return stat(path.c_str(), &st) == 0;
  }

  TempDir dir_;
  std::unique_ptr<Contentd> contentd_;
  std::unique_ptr<Containerd> containerd_;
  std::string address_;
  std::string blobs_dir_;
  int files_ = 0;
};

TEST_P(CtrContentTest, IngestListGet) {
  std::string data = RandomBytes(3 * 1024 * 1024 + 17, 1);  // several Write messages
  std::string digest = Sha256Digest(data);

  CommandResult ingest = Ingest("ingest-plain", data);
  ASSERT_EQ(ingest.exit_code, 0) << ingest.output;

  EXPECT_EQ(ListDigests(), std::vector<std::string>{digest});
  CommandResult ls = Run({"content", "ls"});
  ASSERT_EQ(ls.exit_code, 0) << ls.output;
  EXPECT_TRUE(absl::StrContains(ls.output, "DIGEST")) << ls.output;
  EXPECT_EQ(FirstColumn(ls.output), std::vector<std::string>{digest});

  CommandResult get = Run({"content", "get", digest});
  ASSERT_EQ(get.exit_code, 0) << get.output.substr(0, 1000);
  EXPECT_EQ(get.output.size(), data.size());
  EXPECT_TRUE(get.output == data) << "content get returned different bytes";
  EXPECT_TRUE(BlobFileExists(digest));
  EXPECT_TRUE(ActiveRefs().empty());

  // Namespaces are separate: another namespace sees nothing.
  EXPECT_TRUE(ListDigests("ctr-content-other").empty());
  CommandResult other_get = Run({"content", "get", digest}, "ctr-content-other");
  EXPECT_NE(other_get.exit_code, 0) << other_get.output.substr(0, 200);
  EXPECT_TRUE(absl::StrContains(other_get.output, "not found")) << other_get.output;
}

TEST_P(CtrContentTest, IngestWithExpectedDigestAndSize) {
  std::string data = RandomBytes(100 * 1024, 2);
  std::string digest = Sha256Digest(data);
  CommandResult ingest =
      Ingest("ingest-expected", data,
             {"--expected-digest", digest, "--expected-size", std::to_string(data.size())});
  ASSERT_EQ(ingest.exit_code, 0) << ingest.output;
  EXPECT_EQ(ListDigests(), std::vector<std::string>{digest});
  EXPECT_TRUE(ActiveRefs().empty());

  // The same blob again, under another ref: already there, which ctr reports as success.
  CommandResult again = Ingest("ingest-expected-again", data, {"--expected-digest", digest});
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(ListDigests(), std::vector<std::string>{digest});
}

TEST_P(CtrContentTest, WrongExpectedDigestFailsAndCommitsNothing) {
  std::string data = RandomBytes(64 * 1024, 3);
  std::string actual = Sha256Digest(data);
  std::string wrong = Sha256Digest("something else");
  CommandResult ingest = Ingest("ingest-wrong", data, {"--expected-digest", wrong});
  EXPECT_NE(ingest.exit_code, 0) << ingest.output;
  EXPECT_TRUE(absl::StrContains(ingest.output, "failed precondition")) << ingest.output;

  EXPECT_TRUE(ListDigests().empty());
  EXPECT_FALSE(BlobFileExists(actual));
  EXPECT_FALSE(BlobFileExists(wrong));
  EXPECT_NE(Run({"content", "get", actual}).exit_code, 0);
  EXPECT_NE(Run({"content", "get", wrong}).exit_code, 0);

  // A wrong size fails the same way.
  CommandResult sized = Ingest("ingest-wrong-size", data, {"--expected-size", "10"});
  EXPECT_NE(sized.exit_code, 0) << sized.output;
  EXPECT_TRUE(ListDigests().empty());
  EXPECT_FALSE(BlobFileExists(actual));
}

TEST_P(CtrContentTest, LabelAndRemove) {
  std::string data = "labelled blob\n";
  std::string digest = Sha256Digest(data);
  ASSERT_EQ(Ingest("ingest-label", data).exit_code, 0);

  CommandResult label = Run({"content", "label", digest, "foo=bar", "team=berth"});
  ASSERT_EQ(label.exit_code, 0) << label.output;
  EXPECT_EQ(SplitLabels(label.output), (std::set<std::string>{"foo=bar", "team=berth"}));
  CommandResult ls = Run({"content", "ls"});
  EXPECT_EQ(SplitLabels(LabelsColumn(ls.output, digest)),
            (std::set<std::string>{"foo=bar", "team=berth"}))
      << ls.output;

  // "key=" removes a label; the others stay.
  label = Run({"content", "label", digest, "foo="});
  ASSERT_EQ(label.exit_code, 0) << label.output;
  EXPECT_EQ(SplitLabels(label.output), (std::set<std::string>{"team=berth"}));
  ls = Run({"content", "ls"});
  EXPECT_EQ(LabelsColumn(ls.output, digest), "team=berth") << ls.output;

  // Labelling a blob that is not there fails.
  CommandResult missing = Run({"content", "label", Sha256Digest("nope"), "a=b"});
  EXPECT_NE(missing.exit_code, 0) << missing.output;
  EXPECT_TRUE(absl::StrContains(missing.output, "not found")) << missing.output;

  CommandResult rm = Run({"content", "rm", digest});
  ASSERT_EQ(rm.exit_code, 0) << rm.output;
  EXPECT_EQ(absl::StripAsciiWhitespace(rm.output), digest);
  EXPECT_TRUE(ListDigests().empty());
  EXPECT_NE(Run({"content", "get", digest}).exit_code, 0);
  if (GetParam() == Backend::kContentd) {
    // contentd drops the bytes when no namespace holds the blob (containerd leaves that to GC).
    EXPECT_FALSE(BlobFileExists(digest));
  }
  // ctr treats NotFound on rm as success (prints nothing).
  CommandResult rm_again = Run({"content", "rm", digest});
  EXPECT_EQ(rm_again.exit_code, 0) << rm_again.output;
  EXPECT_EQ(absl::StripAsciiWhitespace(rm_again.output), "");
}

TEST_P(CtrContentTest, ActiveShowsIngestInProgress) {
  // Three ingests stay in progress at once: ctr reads each blob from a FIFO this test holds
  // open. Several, so that a `ref~=` filter that matched everything would show more than one.
  const std::vector<std::string> refs = {"ingest-active", "other-active", "ingest-passive"};
  std::vector<int> fds;
  std::vector<std::unique_ptr<Process>> ctrs;
  std::vector<std::string> firsts;
  for (size_t i = 0; i < refs.size(); ++i) {
    std::string fifo = dir_.Join(absl::StrCat("ingest-", i, ".fifo"));
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0) << strerror(errno);
    // O_RDWR: the open does not wait for ctr, and ctr sees EOF only when this fd closes.
    int fd = open(fifo.c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0) << strerror(errno);
    fds.push_back(fd);
    Process::Options options;
    options.argv = {"sh", "-c",
                    absl::StrCat("exec ctr --address ", address_, " -n ", kNamespace,
                                 " content ingest ", refs[i], " < ", fifo)};
    options.log_dir = dir_.Join(absl::StrCat("ctr-", i));
    ASSERT_EQ(mkdir(options.log_dir.c_str(), 0700), 0) << strerror(errno);
    ctrs.push_back(std::make_unique<Process>(options));
    // Below the pipe's capacity: no blocking.
    firsts.push_back(RandomBytes(48 * 1024, static_cast<uint32_t>(10 + i)));
    ASSERT_EQ(write(fd, firsts[i].data(), firsts[i].size()),
              static_cast<ssize_t>(firsts[i].size()));
  }

  std::vector<std::string> active;
  const std::vector<std::string> all = {"ingest-active", "ingest-passive", "other-active"};
  bool shown = testing::WaitFor(
      [&] {
        active = ActiveRefs();
        std::sort(active.begin(), active.end());
        return active == all;
      },
      absl::Seconds(20));
  EXPECT_TRUE(shown) << "content active: " << Run({"content", "active"}).output;
  // ctr passes its argument on as a filter.
  CommandResult filtered = Run({"content", "active", "ref~=^ingest-act"});
  EXPECT_EQ(filtered.exit_code, 0) << filtered.output;
  EXPECT_EQ(FirstColumn(filtered.output), std::vector<std::string>{"ingest-active"})
      << filtered.output;
  CommandResult suffix = Run({"content", "active", "ref~=-active$"});
  std::vector<std::string> suffixed = FirstColumn(suffix.output);
  std::sort(suffixed.begin(), suffixed.end());
  EXPECT_EQ(suffixed, (std::vector<std::string>{"ingest-active", "other-active"}))
      << suffix.output;
  EXPECT_TRUE(ListDigests().empty());

  std::vector<std::string> expected;
  for (size_t i = 0; i < refs.size(); ++i) {
    std::string second = RandomBytes(16 * 1024, static_cast<uint32_t>(20 + i));
    ASSERT_EQ(write(fds[i], second.data(), second.size()), static_cast<ssize_t>(second.size()));
    close(fds[i]);  // EOF: ctr commits
    int status = ctrs[i]->Wait();
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << ctrs[i]->ReadLog();
    expected.push_back(Sha256Digest(firsts[i] + second));
  }
  std::sort(expected.begin(), expected.end());
  std::vector<std::string> listed = ListDigests();
  std::sort(listed.begin(), listed.end());
  EXPECT_EQ(listed, expected);
  EXPECT_TRUE(ActiveRefs().empty());
}

INSTANTIATE_TEST_SUITE_P(Backends, CtrContentTest,
                         ::testing::Values(Backend::kContentd, Backend::kContainerd),
                         BackendName);

}  // namespace
}  // namespace berth::integration
