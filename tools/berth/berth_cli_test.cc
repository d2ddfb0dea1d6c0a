// The berth binary against a real contentd (and a real imaged for `berth images`): every command
// as a user runs it, through a shell so stdin, stdout and stderr are what a terminal or a script
// would see.

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/base/digest.h"
#include "lib/base/grpc_client.h"
#include "lib/images/grpc_image_store.h"
#include "lib/testing/testing.h"

namespace berth {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

std::string Quote(absl::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteFile(const std::string& path, absl::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  ASSERT_TRUE(out.good()) << path;
}

// Deterministic bytes that do not compress or repeat in an obvious way.
std::string Blob(size_t size, uint32_t seed) {
  std::string data(size, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < size; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    data[i] = static_cast<char>(x & 0xff);
  }
  return data;
}

struct Result {
  int code = -1;
  std::string out;
  std::string err;
};

class BerthCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    socket_ = dir_.Join("c.sock");
    WriteFile(dir_.Join("contentd.toml"), "");
    contentd_ = std::make_unique<testing::Process>(
        std::vector<std::string>{testing::BinaryPath("services/contentd/contentd"), "--config",
                                 dir_.Join("contentd.toml"), "--root", dir_.Join("root"), "--state",
                                 dir_.Join("state"), "--address", socket_, "--nats-url", ""},
        dir_.path());
    ASSERT_TRUE(testing::WaitForUnixSocket(socket_, absl::Seconds(20))) << contentd_->ReadLog();
  }

  void TearDown() override {
    if (HasFailure()) {
      std::cerr << "contentd log:\n" << contentd_->ReadLog();
    }
  }

  // Runs `<prefix> berth --contentd-address SOCK <args...>`, stdin from `stdin_path` unless the
  // prefix ends in a pipe. `prefix` is shell text (environment assignments, "cmd |").
  Result Berth(const std::vector<std::string>& args, const std::string& stdin_path = "/dev/null",
               const std::string& prefix = "") {
    std::vector<std::string> quoted;
    for (const std::string& arg : args) {
      quoted.push_back(Quote(arg));
    }
    std::string out = dir_.Join("out"), err = dir_.Join("err");
    std::string command =
        absl::StrCat(prefix, " ", Quote(testing::BinaryPath("tools/berth/berth")),
                     " --contentd-address ", Quote(socket_), global_args_, " ",
                     absl::StrJoin(quoted, " "),
                     absl::EndsWith(prefix, "|") ? "" : absl::StrCat(" <", Quote(stdin_path)), " >",
                     Quote(out), " 2>", Quote(err));
    Result result;
    testing::RunCommand(command, &result.code);
    result.out = ReadFile(out);
    result.err = ReadFile(err);
    return result;
  }

  // Runs berth expecting exit 0; returns stdout.
  std::string Ok(const std::vector<std::string>& args, const std::string& stdin_path = "/dev/null",
                 const std::string& prefix = "") {
    Result r = Berth(args, stdin_path, prefix);
    EXPECT_EQ(r.code, 0) << absl::StrJoin(args, " ") << "\nstdout: " << r.out
                         << "\nstderr: " << r.err;
    return r.out;
  }

  nlohmann::json Json(const std::vector<std::string>& args) {
    std::vector<std::string> with_json = {"--json"};
    with_json.insert(with_json.end(), args.begin(), args.end());
    std::string out = Ok(with_json);
    nlohmann::json parsed = nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(parsed.is_discarded()) << out;
    return parsed;
  }

  std::string File(absl::string_view name, absl::string_view data) {
    std::string path = dir_.Join(name);
    WriteFile(path, data);
    return path;
  }

  testing::TempDir dir_;
  std::string socket_;
  std::unique_ptr<testing::Process> contentd_;
  std::string global_args_;  // shell text put after --contentd-address by Berth()
};

TEST_F(BerthCliTest, IngestListGetInfoRemove) {
  const std::string data = Blob(3 << 20, 1);
  const std::string digest = Sha256Of(data).ToString();
  std::string path = File("blob", data);

  EXPECT_EQ(Ok({"content", "ingest", "ref-1", "--file", path}), digest + "\n");

  std::string table = Ok({"content", "ls"});
  EXPECT_THAT(table, StartsWith("DIGEST"));
  EXPECT_THAT(table, HasSubstr("SIZE"));
  EXPECT_THAT(table, HasSubstr(digest + "  3.146MB"));
  EXPECT_EQ(Ok({"content", "ls", "-q"}), digest + "\n");
  EXPECT_EQ(Ok({"content", "ls", "-q", "digest==" + digest}), digest + "\n");
  EXPECT_EQ(Ok({"content", "ls", "-q", "size==1"}), "");

  // get streams the exact bytes to stdout.
  EXPECT_TRUE(Ok({"content", "get", digest}) == data) << "get returned different bytes";

  std::string info = Ok({"content", "info", digest});
  EXPECT_THAT(info, HasSubstr("Digest:   " + digest));
  EXPECT_THAT(info, HasSubstr("Size:     3145728 (3.146MB)"));

  // Ingesting the same bytes again (stdin this time) is fine and names the same blob.
  EXPECT_EQ(Ok({"content", "ingest", "ref-2"}, path), digest + "\n");
  EXPECT_EQ(Ok({"content", "ls", "-q"}), digest + "\n");
  EXPECT_EQ(Ok({"content", "active"}), "REF  OFFSET  TOTAL  EXPECTED  AGE\n");

  EXPECT_EQ(Ok({"content", "rm", digest}), digest + "\n");
  EXPECT_EQ(Ok({"content", "ls", "-q"}), "");
  Result gone = Berth({"content", "info", digest});
  EXPECT_EQ(gone.code, 1);
  EXPECT_THAT(gone.err, StartsWith("berth: "));
  EXPECT_THAT(gone.err, HasSubstr("not found"));
  Result rm_again = Berth({"content", "rm", digest});
  EXPECT_EQ(rm_again.code, 1);
  EXPECT_THAT(rm_again.err, HasSubstr("not found"));
}

TEST_F(BerthCliTest, LabelsAddAndRemove) {
  const std::string data = "labelled";
  const std::string digest = Sha256Of(data).ToString();
  Ok({"content", "ingest", "ref", "--label", "a=1", "--label", "keep=yes"}, File("blob", data));
  EXPECT_THAT(Ok({"content", "ls"}), HasSubstr("a=1,keep=yes"));

  EXPECT_EQ(Ok({"content", "label", digest, "b=2", "a=changed"}),
            digest + "  a=changed,b=2,keep=yes\n");
  EXPECT_EQ(Ok({"content", "label", digest, "a=", "b="}), digest + "  keep=yes\n");

  nlohmann::json info = Json({"content", "info", digest});
  EXPECT_EQ(info["digest"], digest);
  EXPECT_EQ(info["size"], data.size());
  EXPECT_EQ(info["labels"], nlohmann::json({{"keep", "yes"}}));
  EXPECT_EQ(Ok({"content", "ls", "-q", "labels.keep==yes"}), digest + "\n");

  Result bad = Berth({"content", "label", digest, "novalue"});
  EXPECT_EQ(bad.code, 2);
  EXPECT_THAT(bad.err, HasSubstr("want key=value"));
}

TEST_F(BerthCliTest, JsonOutputParses) {
  const std::string data = Blob(1000, 2);
  std::string path = File("blob", data);
  nlohmann::json ingested = Json({"content", "ingest", "j", "--file", path});
  EXPECT_EQ(ingested["digest"], Sha256Of(data).ToString());
  EXPECT_EQ(ingested["size"], 1000);

  nlohmann::json list = Json({"content", "ls"});
  ASSERT_TRUE(list.is_array());
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["digest"], Sha256Of(data).ToString());
  EXPECT_EQ(list[0]["size"], 1000);
  EXPECT_TRUE(list[0]["created_at"].is_string());
  EXPECT_TRUE(list[0]["labels"].is_object());

  EXPECT_TRUE(Json({"content", "active"}).is_array());

  nlohmann::json version = Json({"version"});
  EXPECT_FALSE(version["client"]["version"].get<std::string>().empty());
  ASSERT_TRUE(version["daemons"].is_array());
  ASSERT_EQ(version["daemons"].size(), 5u);
  EXPECT_EQ(version["daemons"][0]["name"], "contentd");
  EXPECT_EQ(version["daemons"][0]["address"], socket_);
  EXPECT_FALSE(version["daemons"][0]["version"].get<std::string>().empty());
  EXPECT_FALSE(version["daemons"][0].contains("error"));
  // The other daemons are not running here.
  EXPECT_THAT(version["daemons"][1]["error"].get<std::string>(),
              HasSubstr("cannot reach snapshotd at /run/berth/snapshotd.sock"));
}

TEST_F(BerthCliTest, VersionText) {
  std::string out = Ok({"version"});
  EXPECT_THAT(out, StartsWith("Client:\n  Version:  "));
  EXPECT_THAT(out, HasSubstr(absl::StrCat("contentd (", socket_, "):\n  Version:  ")));
  EXPECT_THAT(out, HasSubstr("snapshotd (/run/berth/snapshotd.sock):\n  unreachable: "));
}

TEST_F(BerthCliTest, WrongDigestStoresNothing) {
  const std::string data = Blob(200000, 3);
  const std::string wrong = Sha256Of("something else").ToString();
  Result r = Berth({"content", "ingest", "bad", "--expected-digest", wrong}, File("blob", data));
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, StartsWith("berth: digest mismatch: stdin is " + Sha256Of(data).ToString() +
                                ", expected " + wrong));
  EXPECT_THAT(r.err, HasSubstr("nothing stored"));
  EXPECT_EQ(Ok({"content", "ls", "-q"}), "");
  EXPECT_EQ(Json({"content", "active"}), nlohmann::json::array());

  // A wrong size, too.
  Result size = Berth({"content", "ingest", "bad", "--expected-size", "10"}, dir_.Join("blob"));
  EXPECT_EQ(size.code, 1);
  EXPECT_THAT(size.err, HasSubstr("longer than --expected-size 10"));
  EXPECT_EQ(Ok({"content", "ls", "-q"}), "");
  EXPECT_EQ(Json({"content", "active"}), nlohmann::json::array());

  // A malformed digest is a usage error, before anything is sent.
  Result usage = Berth({"content", "ingest", "bad", "--expected-digest", "sha256:nope"});
  EXPECT_EQ(usage.code, 2);
  EXPECT_THAT(usage.err, StartsWith("berth: invalid digest"));
}

TEST_F(BerthCliTest, ShortInputIsKeptAndResumed) {
  const std::string data = Blob(2 << 20, 4);
  const std::string digest = Sha256Of(data).ToString();
  std::string path = File("blob", data);
  const std::vector<std::string> ingest = {
      "content",           "ingest", "resume-me", "--expected-size", std::to_string(data.size()),
      "--expected-digest", digest};

  // The input stops after 700000 bytes: the ingest stays at that offset.
  Result cut = Berth(ingest, "", absl::StrCat("head -c 700000 ", Quote(path), " |"));
  EXPECT_EQ(cut.code, 1);
  EXPECT_THAT(cut.err, HasSubstr("stdin ended after 700000 of 2097152 bytes"));
  EXPECT_THAT(cut.err, HasSubstr("kept at offset 700000"));
  EXPECT_EQ(Ok({"content", "ls", "-q"}), "");
  nlohmann::json active = Json({"content", "active"});
  ASSERT_EQ(active.size(), 1u) << active;
  EXPECT_EQ(active[0]["ref"], "resume-me");
  EXPECT_EQ(active[0]["offset"], 700000);
  EXPECT_EQ(active[0]["total"], data.size());
  EXPECT_THAT(Ok({"content", "active"}), HasSubstr("resume-me  700000  2097152  " + digest));

  // The same command with the whole input skips what the ingest has (from a pipe: read and
  // dropped) and finishes it. Had it re-sent those bytes, the digest would not match.
  Result resumed = Berth(ingest, "", absl::StrCat("cat ", Quote(path), " |"));
  EXPECT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_EQ(resumed.out, digest + "\n");
  EXPECT_THAT(resumed.err, HasSubstr("resuming ingest resume-me at offset 700000"));
  EXPECT_EQ(Json({"content", "active"}), nlohmann::json::array());
  EXPECT_TRUE(Ok({"content", "get", digest}) == data);
}

TEST_F(BerthCliTest, KilledIngestResumesFromFile) {
  const std::string data = Blob((3 << 20) + 12345, 5);
  const std::string digest = Sha256Of(data).ToString();
  std::string path = File("blob", data);
  std::string fifo = dir_.Join("fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  // O_RDWR: opening does not wait for a reader, and berth never sees EOF while we hold it.
  int fd = open(fifo.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0) << std::strerror(errno);

  testing::Process ingest(
      std::vector<std::string>{
          "/bin/sh", "-c",
          absl::StrCat("exec ", Quote(testing::BinaryPath("tools/berth/berth")),
                       " --contentd-address ", Quote(socket_), " content ingest killed <",
                       Quote(fifo))},
      dir_.path());
  // berth reads 1 MiB at a time: it sends the first MiB and waits for the second.
  const size_t sent = (1 << 20) + 100;
  ASSERT_EQ(write(fd, data.data(), sent), static_cast<ssize_t>(sent));
  bool reached = testing::WaitFor(
      [&] {
        Result r = Berth({"--json", "content", "active"});
        nlohmann::json active = nlohmann::json::parse(r.out, nullptr, false);
        return active.is_array() && active.size() == 1 && active[0]["offset"] == (1 << 20);
      },
      absl::Seconds(20));
  ASSERT_TRUE(reached) << Ok({"content", "active"}) << ingest.ReadLog();
  ingest.Kill();
  close(fd);

  // Resume from the file: berth seeks past what the ingest holds. Until contentd notices the
  // killed stream, the ref may still be locked.
  Result resumed;
  testing::WaitFor(
      [&] {
        resumed = Berth({"content", "ingest", "killed", "--file", path});
        return resumed.code == 0 || !absl::StrContains(resumed.err, "locked");
      },
      absl::Seconds(10));
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_EQ(resumed.out, digest + "\n");
  EXPECT_THAT(resumed.err, HasSubstr("resuming ingest killed at offset 1048576"));
  EXPECT_TRUE(Ok({"content", "get", digest}) == data);
}

TEST_F(BerthCliTest, AbortDropsAnIngest) {
  std::string path = File("blob", Blob(5000, 6));
  Result cut = Berth({"content", "ingest", "to-abort", "--expected-size", "5000"}, "",
                     absl::StrCat("head -c 100 ", Quote(path), " |"));
  EXPECT_EQ(cut.code, 1);
  EXPECT_THAT(Ok({"content", "active", "ref==to-abort"}), HasSubstr("to-abort  100     5000"));
  EXPECT_EQ(Ok({"content", "abort", "to-abort"}), "to-abort\n");
  EXPECT_EQ(Json({"content", "active"}), nlohmann::json::array());
  Result again = Berth({"content", "abort", "to-abort"});
  EXPECT_EQ(again.code, 1);
  EXPECT_THAT(again.err, StartsWith("berth: "));
}

TEST_F(BerthCliTest, Namespaces) {
  EXPECT_EQ(Ok({"namespace", "create", "team-a", "owner=me"}), "team-a\n");
  EXPECT_THAT(Ok({"namespace", "ls"}), HasSubstr("team-a  owner=me"));
  nlohmann::json list = Json({"ns", "ls"});
  bool found = false;
  for (const auto& ns : list) {
    found = found || ns["name"] == "team-a";
  }
  EXPECT_TRUE(found) << list;

  // Content is per namespace; -n and BERTH_NAMESPACE select it.
  const std::string digest = Sha256Of("in team-a").ToString();
  Ok({"-n", "team-a", "content", "ingest", "r"}, File("blob", "in team-a"));
  EXPECT_EQ(Ok({"content", "ls", "-q"}), "");
  EXPECT_EQ(Ok({"content", "ls", "-q"}, "/dev/null", "BERTH_NAMESPACE=team-a"), digest + "\n");
  EXPECT_EQ(Ok({"content", "ls", "-q", "--namespace", "team-a"}), digest + "\n");

  Ok({"-n", "team-a", "content", "rm", digest});
  EXPECT_EQ(Ok({"namespace", "rm", "team-a"}), "team-a\n");
  EXPECT_THAT(Ok({"namespace", "ls", "-q"}), Not(HasSubstr("team-a")));

  Result bad = Berth({"-n", "no spaces", "content", "ls"});
  EXPECT_EQ(bad.code, 2);
  EXPECT_THAT(bad.err, StartsWith("berth: namespace"));
}

TEST_F(BerthCliTest, Leases) {
  EXPECT_EQ(Ok({"lease", "create", "--id", "l1", "--label", "x=y"}), "l1\n");
  std::string table = Ok({"lease", "ls"});
  EXPECT_THAT(table, StartsWith("ID"));
  EXPECT_THAT(table, HasSubstr("containerd.io/gc.expire="));
  EXPECT_THAT(table, HasSubstr("x=y"));

  nlohmann::json created = Json({"lease", "create", "--expire", "0"});
  std::string generated = created["id"];
  EXPECT_THAT(generated, StartsWith("berth-"));
  EXPECT_FALSE(created["labels"].contains("containerd.io/gc.expire"));

  nlohmann::json list = Json({"lease", "ls"});
  ASSERT_EQ(list.size(), 2u) << list;
  Result dup = Berth({"lease", "create", "--id", "l1"});
  EXPECT_EQ(dup.code, 1);
  EXPECT_THAT(dup.err, StartsWith("berth: "));

  EXPECT_EQ(Ok({"lease", "rm", "l1", generated, "--sync"}), "l1\n" + generated + "\n");
  EXPECT_EQ(Ok({"lease", "ls", "-q"}), "");
  Result missing = Berth({"lease", "rm", "l1"});
  EXPECT_EQ(missing.code, 1);
}

TEST_F(BerthCliTest, ErrorsAndUsage) {
  Result usage = Berth({"content"});
  EXPECT_EQ(usage.code, 2);
  EXPECT_THAT(usage.err, StartsWith("berth: missing command after 'berth content' (one of: "
                                    "ingest, ls, get, info, rm, gc, label, active, abort)"));
  Result none = Berth({});
  EXPECT_EQ(none.code, 2);
  EXPECT_THAT(none.err, HasSubstr("one of: content, lease, namespace, snapshot, images, events, "
                                  "pull, push, login, logout, import, export, version"));
  EXPECT_EQ(Berth({"content", "bogus"}).code, 2);
  EXPECT_EQ(Berth({"content", "get", "not-a-digest"}).code, 2);
  EXPECT_EQ(Berth({"--timeout", "soon", "content", "ls"}).code, 2);
  EXPECT_EQ(Berth({"content", "ls", "--no-such-flag"}).code, 2);
  EXPECT_EQ(Berth({"--help"}).code, 0);

  Result filter = Berth({"content", "ls", "digest=="});
  EXPECT_EQ(filter.code, 1);
  EXPECT_THAT(filter.err, StartsWith("berth: "));

  Result missing_file = Berth({"content", "ingest", "r", "--file", dir_.Join("nope")});
  EXPECT_EQ(missing_file.code, 1);
  EXPECT_THAT(missing_file.err, HasSubstr("No such file or directory"));

  // No daemon at the address: a clear message naming it.
  std::string nowhere = dir_.Join("nowhere.sock");
  Result unreachable = Berth({"--contentd-address", nowhere, "content", "ls"});
  EXPECT_EQ(unreachable.code, 1);
  EXPECT_THAT(unreachable.err, StartsWith("berth: cannot reach contentd at " + nowhere + ": "));
  // The flag (Berth() passes the right one) wins over the environment...
  Result env = Berth({"content", "ls"}, "/dev/null",
                     absl::StrCat("BERTH_CONTENTD_ADDRESS=", Quote(nowhere)));
  EXPECT_EQ(env.code, 0) << env.err;
  // ... and without the flag the environment is used.
  int code = -1;
  testing::RunCommand(
      absl::StrCat("BERTH_CONTENTD_ADDRESS=", Quote(nowhere), " ",
                   Quote(testing::BinaryPath("tools/berth/berth")),
                   " content ls 2>&1 | grep -q 'cannot reach contentd at ", nowhere, "'"),
      &code);
  EXPECT_EQ(code, 0);
}

TEST_F(BerthCliTest, TimeoutBoundsAHungDaemon) {
  // A socket that accepts connections but never speaks gRPC.
  std::string hung = dir_.Join("hung.sock");
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, hung.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 16), 0);

  absl::Time start = absl::Now();
  Result stub = Berth({"--contentd-address", hung, "--timeout", "1s", "namespace", "ls"});
  EXPECT_EQ(stub.code, 1);
  EXPECT_THAT(stub.err, HasSubstr("did not answer in time (--timeout 1s)"));

  Result store = Berth({"--contentd-address", hung, "--timeout", "1s", "content", "ls"});
  EXPECT_EQ(store.code, 1);
  EXPECT_THAT(store.err, StartsWith("berth: "));
  EXPECT_THAT(store.err, HasSubstr("1s"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(15));
  close(fd);
}

// `berth images` against a real imaged (records only: no content behind the targets, which a
// store allows). Seeded through GrpcImageStore, as any Images client would.
class BerthImagesTest : public BerthCliTest {
 protected:
  void SetUp() override {
    BerthCliTest::SetUp();
    imaged_socket_ = dir_.Join("i.sock");
    WriteFile(dir_.Join("imaged.toml"), "");
    imaged_ = std::make_unique<testing::Process>(
        std::vector<std::string>{testing::BinaryPath("services/imaged/imaged"), "--config",
                                 dir_.Join("imaged.toml"), "--root", dir_.Join("imaged-root"),
                                 "--state", dir_.Join("imaged-state"), "--address",
                                 imaged_socket_, "--contentd-address", socket_, "--nats-url", ""},
        dir_.path());
    ASSERT_TRUE(testing::WaitForUnixSocket(imaged_socket_, absl::Seconds(20)))
        << imaged_->ReadLog();
    global_args_ = " --imaged-address " + Quote(imaged_socket_);
    store_ = std::make_unique<images::GrpcImageStore>(Dial(imaged_socket_));
  }

  void TearDown() override {
    if (HasFailure() && imaged_ != nullptr) {
      std::cerr << "imaged log:\n" << imaged_->ReadLog();
    }
    BerthCliTest::TearDown();
  }

  images::Image Seed(const std::string& name, const std::string& seed, const LabelMap& labels,
                     const std::string& media_type = kIndexType) {
    images::Image image;
    image.name = name;
    image.labels = labels;
    image.target.media_type = media_type;
    image.target.digest = Sha256Of(seed);
    image.target.size = 1234;
    absl::StatusOr<images::Image> created = store_->Create(ctx_, image);
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? *created : image;
  }

  static constexpr char kIndexType[] = "application/vnd.oci.image.index.v1+json";
  static constexpr char kManifestType[] = "application/vnd.oci.image.manifest.v1+json";
  Context ctx_{"default", ""};
  std::string imaged_socket_;
  std::unique_ptr<testing::Process> imaged_;
  std::unique_ptr<images::GrpcImageStore> store_;
};

TEST_F(BerthImagesTest, ListQuietFiltersAndJson) {
  images::Image alpine = Seed("docker.io/library/alpine:3.19", "alpine", {{"team", "a"}});
  images::Image busybox =
      Seed("docker.io/library/busybox:1", "busybox", {}, kManifestType);
  const std::string alpine_digest = alpine.target.digest.ToString();

  std::vector<std::string> rows = absl::StrSplit(Ok({"images", "ls"}), '\n');
  ASSERT_EQ(rows.size(), 4u) << absl::StrJoin(rows, "\n");
  EXPECT_THAT(rows[0], StartsWith("NAME  "));
  EXPECT_THAT(rows[0], HasSubstr("  DIGEST  "));
  EXPECT_THAT(rows[0], HasSubstr("  SIZE  "));
  EXPECT_THAT(rows[0], HasSubstr("  MEDIA TYPE  "));
  EXPECT_THAT(rows[0], HasSubstr("  LABELS"));
  EXPECT_THAT(rows[1], StartsWith("docker.io/library/alpine:3.19  "));
  EXPECT_THAT(rows[1], HasSubstr(absl::StrCat("  ", alpine_digest, "  1.234kB  ", kIndexType)));
  EXPECT_THAT(rows[1], HasSubstr("  team=a"));
  EXPECT_THAT(rows[2], StartsWith("docker.io/library/busybox:1  "));
  EXPECT_THAT(rows[2], HasSubstr(absl::StrCat("  ", busybox.target.digest.ToString(),
                                              "  1.234kB  ", kManifestType, "  -")));
  EXPECT_EQ(rows[3], "");
  EXPECT_EQ(Ok({"images", "ls", "-q"}),
            "docker.io/library/alpine:3.19\ndocker.io/library/busybox:1\n");
  EXPECT_EQ(Ok({"image", "list", "-q", "labels.team==a"}), "docker.io/library/alpine:3.19\n");
  EXPECT_EQ(Ok({"images", "ls", "-q", "target.digest==" + alpine_digest}),
            "docker.io/library/alpine:3.19\n");
  // Filters are alternatives: either may match.
  EXPECT_EQ(Ok({"images", "ls", "-q", "name~=busybox", "labels.team==a"}),
            "docker.io/library/alpine:3.19\ndocker.io/library/busybox:1\n");
  EXPECT_EQ(Ok({"images", "ls", "-q", "name==nothing"}), "");
  // Other namespaces see nothing.
  EXPECT_EQ(Ok({"-n", "other", "images", "ls", "-q"}), "");

  nlohmann::json list = Json({"images", "ls"});
  ASSERT_TRUE(list.is_array());
  ASSERT_EQ(list.size(), 2u) << list;
  EXPECT_EQ(list[0]["name"], "docker.io/library/alpine:3.19");
  EXPECT_EQ(list[0]["labels"], nlohmann::json({{"team", "a"}}));
  EXPECT_EQ(list[0]["target"]["digest"], alpine_digest);
  EXPECT_EQ(list[0]["target"]["size"], 1234);
  EXPECT_EQ(list[0]["target"]["media_type"], kIndexType);
  EXPECT_EQ(list[1]["target"]["media_type"], kManifestType);

  // A malformed filter is the daemon's InvalidArgument: exit 1, as `content ls` does.
  Result bad = Berth({"images", "ls", "name=="});
  EXPECT_EQ(bad.code, 1);
  EXPECT_THAT(bad.err, StartsWith("berth: "));
  EXPECT_EQ(bad.out, "");
}

TEST_F(BerthImagesTest, TagRefusesDuplicatesUnlessForced) {
  images::Image source = Seed("src:1", "source", {{"k", "v"}});
  images::Image other = Seed("other:1", "other", {});
  const std::string digest = source.target.digest.ToString();

  EXPECT_EQ(Ok({"images", "tag", "src:1", "new:1", "new:2"}), "new:1\nnew:2\n");
  nlohmann::json tagged = Json({"images", "inspect", "new:2"});
  EXPECT_EQ(tagged["target"]["digest"], digest);
  EXPECT_EQ(tagged["labels"], nlohmann::json({{"k", "v"}}));
  EXPECT_EQ(Ok({"images", "ls", "-q", "target.digest==" + digest}), "new:1\nnew:2\nsrc:1\n");

  // An existing name is refused and left as it was...
  Result dup = Berth({"images", "tag", "other:1", "new:1"});
  EXPECT_EQ(dup.code, 1);
  EXPECT_THAT(dup.err, StartsWith("berth: "));
  EXPECT_THAT(dup.err, HasSubstr("already exists"));
  EXPECT_EQ(Json({"images", "inspect", "new:1"})["target"]["digest"], digest);

  // ... unless --force, which points it at the new source's target.
  std::string created_before = Json({"images", "inspect", "new:1"})["created_at"];
  EXPECT_EQ(Ok({"images", "tag", "--force", "other:1", "new:1"}), "new:1\n");
  nlohmann::json forced = Json({"images", "inspect", "new:1"});
  EXPECT_EQ(forced["target"]["digest"], other.target.digest.ToString());
  EXPECT_EQ(forced["labels"], nlohmann::json::object());
  EXPECT_EQ(forced["created_at"], created_before);

  // An unknown source: the daemon's NotFound, nothing made.
  Result missing = Berth({"images", "tag", "nope:1", "made:1"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_THAT(missing.err, StartsWith("berth: "));
  EXPECT_THAT(missing.err, HasSubstr("not found"));
  EXPECT_EQ(Ok({"images", "ls", "-q", "name==made:1"}), "");

  // Missing TARGET is a usage error.
  EXPECT_EQ(Berth({"images", "tag", "src:1"}).code, 2);
}

TEST_F(BerthImagesTest, InspectPrintsTheRecord) {
  images::Image image = Seed("docker.io/library/alpine:3.19", "alpine", {{"a", "1"}, {"b", "2"}});
  // Without --json too: there is no table for one record.
  std::string out = Ok({"images", "inspect", "docker.io/library/alpine:3.19"});
  nlohmann::json record = nlohmann::json::parse(out, nullptr, false);
  ASSERT_FALSE(record.is_discarded()) << out;
  EXPECT_EQ(record["name"], "docker.io/library/alpine:3.19");
  EXPECT_EQ(record["labels"], nlohmann::json({{"a", "1"}, {"b", "2"}}));
  EXPECT_EQ(record["target"]["media_type"], kIndexType);
  EXPECT_EQ(record["target"]["digest"], image.target.digest.ToString());
  EXPECT_EQ(record["target"]["size"], 1234);
  EXPECT_TRUE(record["target"]["annotations"].is_object());
  absl::Time created, updated;
  std::string err;
  ASSERT_TRUE(absl::ParseTime(absl::RFC3339_full, record["created_at"].get<std::string>(),
                              &created, &err))
      << err;
  ASSERT_TRUE(absl::ParseTime(absl::RFC3339_full, record["updated_at"].get<std::string>(),
                              &updated, &err))
      << err;
  EXPECT_EQ(created, image.created_at);
  EXPECT_EQ(updated, image.updated_at);

  Result missing = Berth({"images", "inspect", "nope:1"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_EQ(missing.out, "");
  EXPECT_THAT(missing.err, StartsWith("berth: "));
  EXPECT_THAT(missing.err, HasSubstr("not found"));
}

TEST_F(BerthImagesTest, RemoveKnownAndUnknown) {
  Seed("a:1", "a", {});
  Seed("b:1", "b", {});
  Seed("c:1", "c", {});
  EXPECT_EQ(Ok({"images", "rm", "a:1"}), "a:1\n");
  EXPECT_EQ(Ok({"images", "ls", "-q"}), "b:1\nc:1\n");

  // An unknown name fails (exit 1, the daemon's NotFound) but the known ones go.
  Result mixed = Berth({"images", "rm", "b:1", "nope:1", "c:1", "--sync"});
  EXPECT_EQ(mixed.code, 1);
  EXPECT_EQ(mixed.out, "b:1\nc:1\n");
  EXPECT_THAT(mixed.err, StartsWith("berth: "));
  EXPECT_THAT(mixed.err, HasSubstr("not found"));
  EXPECT_EQ(Ok({"images", "ls", "-q"}), "");

  EXPECT_EQ(Berth({"images", "rm"}).code, 2);
  Result usage = Berth({"images"});
  EXPECT_EQ(usage.code, 2);
  EXPECT_THAT(usage.err, HasSubstr("one of: ls, rm, tag, inspect"));

  // No imaged at the address: named like the other daemons.
  std::string nowhere = dir_.Join("nowhere.sock");
  Result unreachable = Berth({"--imaged-address", nowhere, "images", "ls"});
  EXPECT_EQ(unreachable.code, 1);
  EXPECT_THAT(unreachable.err, StartsWith("berth: cannot reach imaged at " + nowhere + ": "));
}

}  // namespace
}  // namespace berth
