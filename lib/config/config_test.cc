#include "lib/config/config.h"
#include "lib/testing/testing.h"

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace berth::config {
namespace {

using ::testing::HasSubstr;

// A daemon name with no /etc/berth/<name>.toml, so the default file is absent.
constexpr char kDaemon[] = "configtestd";

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = getenv("TMPDIR");
    std::string tmpl = std::string(tmp != nullptr ? tmp : "/tmp") + "/berth-config-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string WriteFile(const std::string& name, const std::string& content) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << content;
    return path;
  }

  static absl::Status Parse(DaemonConfig& cfg, std::vector<std::string> args) {
    args.insert(args.begin(), kDaemon);
    std::vector<char*> argv;
    for (std::string& a : args) {
      argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    return cfg.Parse(static_cast<int>(args.size()), argv.data());
  }

  std::string dir_;
};

TEST_F(ConfigTest, DefaultsWithNoFile) {
  ASSERT_FALSE(std::filesystem::exists(std::string("/etc/berth/") + kDaemon + ".toml"));
  DaemonConfig cfg(kDaemon, {"contentd", "snapshotd"});
  ASSERT_TRUE(Parse(cfg, {}).ok());
  const CommonOptions& o = cfg.options();
  EXPECT_EQ(o.daemon, kDaemon);
  EXPECT_EQ(o.config_file, "");
  EXPECT_EQ(o.root, "/var/lib/berth/configtestd");
  EXPECT_EQ(o.state, "/run/berth/configtestd");
  EXPECT_EQ(o.address, "/run/berth/configtestd.sock");
  EXPECT_EQ(o.metrics_address, "");
  EXPECT_EQ(o.nats_url, "");
  EXPECT_EQ(o.nats_credentials, "");
  EXPECT_EQ(o.log_level, "info");
  EXPECT_EQ(o.default_namespace, "default");
  EXPECT_EQ(o.peers, (std::map<std::string, std::string>{
                         {"contentd", "/run/berth/contentd.sock"},
                         {"snapshotd", "/run/berth/snapshotd.sock"}}));
  EXPECT_TRUE(cfg.toml().empty());
}

TEST_F(ConfigTest, TomlValuesApplied) {
  std::string path = WriteFile("c.toml", R"(
root = "/data/root"
state = "/data/state"
address = "/data/d.sock"
metrics_address = "127.0.0.1:9310"
nats_url = "nats://127.0.0.1:4222"
nats_tls_ca = "/etc/berth/nats-ca.pem"
nats_tls_cert = "/etc/berth/client.pem"
nats_tls_key = "/etc/berth/client.key"
nats_tls_server_name = "nats.internal"
log_level = "debug"
default_namespace = "k8s.io"
contentd_address = "/data/contentd.sock"

[configtestd]
extra = [1, 2]
)");
  DaemonConfig cfg(kDaemon, {"contentd", "snapshotd"});
  absl::Status st = Parse(cfg, {"--config", path});
  ASSERT_TRUE(st.ok()) << st;
  const CommonOptions& o = cfg.options();
  EXPECT_EQ(o.config_file, path);
  EXPECT_EQ(o.root, "/data/root");
  EXPECT_EQ(o.state, "/data/state");
  EXPECT_EQ(o.address, "/data/d.sock");
  EXPECT_EQ(o.metrics_address, "127.0.0.1:9310");
  EXPECT_EQ(o.nats_url, "nats://127.0.0.1:4222");
  EXPECT_EQ(o.nats_tls.ca_file, "/etc/berth/nats-ca.pem");
  EXPECT_EQ(o.nats_tls.cert_file, "/etc/berth/client.pem");
  EXPECT_EQ(o.nats_tls.key_file, "/etc/berth/client.key");
  EXPECT_EQ(o.nats_tls.server_name, "nats.internal");
  EXPECT_EQ(o.log_level, "debug");
  EXPECT_EQ(o.default_namespace, "k8s.io");
  EXPECT_EQ(o.peers.at("contentd"), "/data/contentd.sock");
  EXPECT_EQ(o.peers.at("snapshotd"), "/run/berth/snapshotd.sock");
  // The daemon's own table is available, unclaimed keys included.
  ASSERT_NE(cfg.toml().get("extra"), nullptr);
  EXPECT_TRUE(cfg.toml().get("extra")->is_array());
  EXPECT_EQ(cfg.toml().get("extra")->source().begin.line, 16u);  // lines kept for the daemon
}

TEST_F(ConfigTest, FlagsOverrideToml) {
  std::string path = WriteFile("c.toml", R"(
root = "/toml/root"
state = "/toml/state"
log_level = "debug"
contentd_address = "/toml/contentd.sock"
nats_url = "nats://toml:4222"
)");
  DaemonConfig cfg(kDaemon, {"contentd"});
  absl::Status st = Parse(cfg, {"--config=" + path, "--root", "/flag/root", "--log-level=warn",
                                "--contentd-address", "/flag/contentd.sock", "--nats-url", ""});
  ASSERT_TRUE(st.ok()) << st;
  const CommonOptions& o = cfg.options();
  EXPECT_EQ(o.root, "/flag/root");
  EXPECT_EQ(o.state, "/toml/state");
  EXPECT_EQ(o.log_level, "warn");
  EXPECT_EQ(o.peers.at("contentd"), "/flag/contentd.sock");
  EXPECT_EQ(o.nats_url, "");  // an explicitly empty flag still wins
}

TEST_F(ConfigTest, AllCommonFlags) {
  DaemonConfig cfg(kDaemon, {"contentd"});
  absl::Status st = Parse(
      cfg, {"--root", "/r", "--state", "/s", "--address", "/a.sock", "--metrics-address",
            "127.0.0.1:0", "--nats-url", "nats://x:1", "--nats-credentials", "u:p",
            "--log-level", "error", "--default-namespace", "ns", "--contentd-address", "/c"});
  ASSERT_TRUE(st.ok()) << st;
  const CommonOptions& o = cfg.options();
  EXPECT_EQ(o.root, "/r");
  EXPECT_EQ(o.state, "/s");
  EXPECT_EQ(o.address, "/a.sock");
  EXPECT_EQ(o.metrics_address, "127.0.0.1:0");
  EXPECT_EQ(o.nats_url, "nats://x:1");
  EXPECT_EQ(o.nats_credentials, "u:p");
  EXPECT_EQ(o.log_level, "error");
  EXPECT_EQ(o.default_namespace, "ns");
  EXPECT_EQ(o.peers.at("contentd"), "/c");
}

struct Own {
  std::string snapshotter = "overlayfs";
  int64_t workers = 4;
  bool sync = false;
  bool verbose = true;
};

void AddOwn(DaemonConfig& cfg, Own& own) {
  cfg.AddOption("--snapshotter", "snapshotter", &own.snapshotter, "overlayfs or native");
  cfg.AddOption("--workers", "workers", &own.workers, "worker count");
  cfg.AddOption("--sync", "sync", &own.sync, "fsync everything");
  cfg.AddOption("--verbose", "verbose", &own.verbose, "say more");
}

TEST_F(ConfigTest, DaemonOptionsDefaults) {
  DaemonConfig cfg(kDaemon, {});
  Own own;
  AddOwn(cfg, own);
  ASSERT_TRUE(Parse(cfg, {}).ok());
  EXPECT_EQ(own.snapshotter, "overlayfs");
  EXPECT_EQ(own.workers, 4);
  EXPECT_FALSE(own.sync);
  EXPECT_TRUE(own.verbose);
}

TEST_F(ConfigTest, DaemonOptionsFromToml) {
  std::string path = WriteFile("c.toml", R"(
[configtestd]
snapshotter = "native"
workers = 16
sync = true
verbose = false
)");
  DaemonConfig cfg(kDaemon, {});
  Own own;
  AddOwn(cfg, own);
  absl::Status st = Parse(cfg, {"--config", path});
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(own.snapshotter, "native");
  EXPECT_EQ(own.workers, 16);
  EXPECT_TRUE(own.sync);
  EXPECT_FALSE(own.verbose);
}

TEST_F(ConfigTest, DaemonOptionsFromFlags) {
  DaemonConfig cfg(kDaemon, {});
  Own own;
  AddOwn(cfg, own);
  absl::Status st =
      Parse(cfg, {"--snapshotter", "native", "--workers=8", "--sync", "--verbose=false"});
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(own.snapshotter, "native");
  EXPECT_EQ(own.workers, 8);
  EXPECT_TRUE(own.sync);
  EXPECT_FALSE(own.verbose);
}

TEST_F(ConfigTest, DaemonOptionFlagsOverrideToml) {
  std::string path = WriteFile("c.toml", R"(
[configtestd]
snapshotter = "native"
workers = 16
sync = true
verbose = false
)");
  DaemonConfig cfg(kDaemon, {});
  Own own;
  AddOwn(cfg, own);
  absl::Status st = Parse(cfg, {"--config", path, "--snapshotter", "btrfs", "--workers", "2",
                                "--sync=false", "--verbose"});
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(own.snapshotter, "btrfs");
  EXPECT_EQ(own.workers, 2);
  EXPECT_FALSE(own.sync);
  EXPECT_TRUE(own.verbose);
}

TEST_F(ConfigTest, MalformedTomlNamesFileAndLine) {
  std::string path = WriteFile("bad.toml", "root = \"/x\"\nstate = \n");
  DaemonConfig cfg(kDaemon, {});
  absl::Status st = Parse(cfg, {"--config", path});
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr(path + ":2:"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("malformed TOML"));
}

TEST_F(ConfigTest, WrongTypedCommonKey) {
  std::string path = WriteFile("c.toml", "\nroot = 5\n");
  DaemonConfig cfg(kDaemon, {});
  absl::Status st = Parse(cfg, {"--config", path});
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), path + ":2: key \"root\": expected a string, got an integer");
}

TEST_F(ConfigTest, WrongTypedDaemonKeys) {
  struct Case {
    const char* toml;
    const char* message;
  } cases[] = {
      {"[configtestd]\nworkers = \"many\"\n",
       ":2: key \"configtestd.workers\": expected an integer, got a string"},
      {"[configtestd]\nsync = 1\n", ":2: key \"configtestd.sync\": expected a boolean"},
      {"[configtestd]\n\nsnapshotter = true\n",
       ":3: key \"configtestd.snapshotter\": expected a string, got a boolean"},
      {"[configtestd]\nworkers = 1.5\n",
       ":2: key \"configtestd.workers\": expected an integer, got a float"},
      {"configtestd = \"x\"\n", ":1: key \"configtestd\": expected a table, got a string"},
  };
  for (const Case& c : cases) {
    std::string path = WriteFile("c.toml", c.toml);
    DaemonConfig cfg(kDaemon, {});
    Own own;
    AddOwn(cfg, own);
    absl::Status st = Parse(cfg, {"--config", path});
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << c.toml;
    EXPECT_THAT(std::string(st.message()), HasSubstr(path + c.message)) << c.toml;
  }
}

TEST_F(ConfigTest, WrongTypedKeyIsAnErrorEvenWhenTheFlagIsGiven) {
  std::string path = WriteFile("c.toml", "state = []\n");
  DaemonConfig cfg(kDaemon, {});
  absl::Status st = Parse(cfg, {"--config", path, "--state", "/s"});
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("key \"state\": expected a string"));
}

TEST_F(ConfigTest, UnknownTopLevelKey) {
  std::string path = WriteFile("c.toml", "root = \"/r\"\nlog-level = \"debug\"\n");
  DaemonConfig cfg(kDaemon, {});
  absl::Status st = Parse(cfg, {"--config", path});
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr(path + ":2: unknown key \"log-level\""));
}

TEST_F(ConfigTest, BadLogLevel) {
  {
    DaemonConfig cfg(kDaemon, {});
    absl::Status st = Parse(cfg, {"--log-level", "loud"});
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(st.message()), HasSubstr("unknown log level \"loud\""));
  }
  {
    std::string path = WriteFile("c.toml", "log_level = \"loud\"\n");
    DaemonConfig cfg(kDaemon, {});
    absl::Status st = Parse(cfg, {"--config", path});
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(st.message()), HasSubstr(path + ":1: key \"log_level\""));
  }
}

TEST_F(ConfigTest, MissingExplicitConfigFile) {
  DaemonConfig cfg(kDaemon, {});
  std::string path = dir_ + "/nope.toml";
  absl::Status st = Parse(cfg, {"--config", path});
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "config file " + path + ": no such file");
}

TEST_F(ConfigTest, ConfigFileIsADirectory) {
  DaemonConfig cfg(kDaemon, {});
  absl::Status st = Parse(cfg, {"--config", dir_});
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("not a regular file"));
}

TEST_F(ConfigTest, NatsUserAndPassword) {
  {
    std::string path = WriteFile("c.toml", "nats_user = \"u\"\nnats_password = \"p\"\n");
    DaemonConfig cfg(kDaemon, {});
    ASSERT_TRUE(Parse(cfg, {"--config", path}).ok());
    EXPECT_EQ(cfg.options().nats_credentials, "u:p");
  }
  {
    std::string path = WriteFile("c.toml", "nats_user = \"u\"\nnats_password = \"p\"\n");
    DaemonConfig cfg(kDaemon, {});
    ASSERT_TRUE(Parse(cfg, {"--config", path, "--nats-credentials", "a:b"}).ok());
    EXPECT_EQ(cfg.options().nats_credentials, "a:b");
  }
  {
    std::string path = WriteFile("c.toml", "nats_credentials = \"x:y\"\nnats_user = \"u\"\n");
    DaemonConfig cfg(kDaemon, {});
    ASSERT_TRUE(Parse(cfg, {"--config", path}).ok());
    EXPECT_EQ(cfg.options().nats_credentials, "x:y");
  }
}

TEST_F(ConfigTest, BadFlags) {
  {
    DaemonConfig cfg(kDaemon, {});
    absl::Status st = Parse(cfg, {"--no-such-flag"});
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(st.message()), HasSubstr("--no-such-flag"));
  }
  {
    DaemonConfig cfg(kDaemon, {});
    Own own;
    AddOwn(cfg, own);
    absl::Status st = Parse(cfg, {"--workers", "lots"});
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(st.message()), HasSubstr("--workers"));
  }
  {
    DaemonConfig cfg(kDaemon, {});
    absl::Status st = Parse(cfg, {"--root"});
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST_F(ConfigTest, HelpPrintsUsageAndExitsZero) {
  EXPECT_EXIT(
      {
        DaemonConfig cfg(kDaemon, {"contentd"});
        Own own;
        AddOwn(cfg, own);
        (void)Parse(cfg, {"--help"});
        std::exit(3);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST_F(ConfigTest, HelpListsFlags) {
  DaemonConfig cfg(kDaemon, {"contentd"});
  Own own;
  AddOwn(cfg, own);
  std::string help = cfg.app().help();
  for (const char* flag : {"--config", "--root", "--state", "--address", "--metrics-address",
                           "--nats-url", "--nats-credentials", "--log-level",
                           "--default-namespace", "--contentd-address", "--snapshotter",
                           "--workers", "--sync", "--version"}) {
    EXPECT_THAT(help, HasSubstr(flag));
  }
  EXPECT_THAT(help, HasSubstr("/var/lib/berth/configtestd"));  // defaults shown
}

TEST_F(ConfigTest, VersionExitsZero) {
  EXPECT_EXIT(
      {
        DaemonConfig cfg(kDaemon, {});
        (void)Parse(cfg, {"--version"});
        std::exit(3);
      },
      ::testing::ExitedWithCode(0), "");
}

// The files deploy/config ships parse: no unknown or wrong-typed top-level key (each daemon's
// own table is its main's to check), and the TLS settings are there, off.
TEST_F(ConfigTest, ShippedConfigsParse) {
  struct Shipped {
    const char* daemon;
    std::vector<std::string> peers;
  };
  for (const Shipped& d : {Shipped{"contentd", {}}, Shipped{"snapshotd", {"contentd"}},
                           Shipped{"eventd", {}}, Shipped{"imaged", {"contentd", "snapshotd"}},
                           Shipped{"execd", {"contentd", "snapshotd"}}}) {
    std::string path = berth::testing::SourcePath(absl::StrCat("deploy/config/", d.daemon, ".toml"));
    DaemonConfig cfg(d.daemon, d.peers);
    std::vector<std::string> args = {d.daemon, "--config", path};
    std::vector<char*> argv;
    for (std::string& a : args) {
      argv.push_back(a.data());
    }
    absl::Status st = cfg.Parse(static_cast<int>(argv.size()), argv.data());
    ASSERT_TRUE(st.ok()) << path << ": " << st;
    EXPECT_EQ(cfg.options().root, std::string("/var/lib/berth/") + d.daemon);
    EXPECT_EQ(cfg.options().nats_url, "nats://127.0.0.1:4222") << path;
    const events::NatsTls& tls = cfg.options().nats_tls;
    EXPECT_EQ(tls.ca_file + tls.cert_file + tls.key_file + tls.server_name, "") << path;
  }
}

}  // namespace
}  // namespace berth::config
