#include "integration/harness.h"

#include <curl/curl.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <random>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/numbers.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "lib/base/digest.h"
#include "lib/base/grpc_status.h"

namespace berth::integration {
namespace {

absl::Status WriteTextFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) {
    return absl::InternalError(absl::StrCat("writing ", path, " failed"));
  }
  return absl::OkStatus();
}

absl::Status MakeDir(const std::string& path) {
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    return absl::InternalError(absl::StrCat("mkdir ", path, ": ", strerror(errno)));
  }
  return absl::OkStatus();
}

std::string TomlString(const std::string& s) {
  // Paths in tests never contain quotes or backslashes; keep the quoting honest anyway.
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
    }
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

void ListFilesInto(const std::string& root, const std::string& rel,
                   std::vector<std::string>* out) {
  std::string path = rel.empty() ? root : absl::StrCat(root, "/", rel);
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) {
    return;
  }
  while (struct dirent* entry = readdir(dir)) {
    std::string name = entry->d_name;
    if (name == "." || name == "..") {
      continue;
    }
    std::string child_rel = rel.empty() ? name : absl::StrCat(rel, "/", name);
    struct stat st;
    if (lstat(absl::StrCat(root, "/", child_rel).c_str(), &st) != 0) {
      continue;
    }
    if (S_ISDIR(st.st_mode)) {
      ListFilesInto(root, child_rel, out);
    } else if (S_ISREG(st.st_mode)) {
      out->push_back(child_rel);
    }
  }
  closedir(dir);
}

}  // namespace

CommandResult Ctr(const std::string& address, const std::string& ns,
                  const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"ctr", "--address", address};
  if (!ns.empty()) {
    argv.insert(argv.end(), {"--namespace", ns});
  }
  argv.insert(argv.end(), args.begin(), args.end());
  CommandResult result;
  result.output = testing::RunCommand(argv, &result.exit_code);
  return result;
}

// ---------------------------------------------------------------------------------------------
// DaemonProcess

bool DaemonProcess::Start(const std::vector<std::string>& argv,
                          const std::function<bool()>& ready, absl::Duration timeout) {
  if (process_ != nullptr) {
    old_logs_.push_back(process_->log_path());
    process_.reset();
  }
  process_ = std::make_unique<testing::Process>(argv, dir_);
  bool up = testing::WaitFor([&] { return process_->TryReap() || ready(); }, timeout);
  return up && process_->running();
}

absl::Status DaemonProcess::StartServing(absl::string_view name,
                                         const std::vector<std::string>& argv,
                                         const std::string& socket) {
  if (!Start(
          argv, [&] { return testing::WaitForUnixSocket(socket, absl::ZeroDuration()); },
          absl::Seconds(20))) {
    return absl::UnavailableError(absl::StrCat(name, " (", absl::StrJoin(argv, " "),
                                               ") did not come up; log:\n", ReadLog()));
  }
  return absl::OkStatus();
}

void DaemonProcess::Kill() {
  if (process_ != nullptr) {
    process_->Kill();
  }
}

int DaemonProcess::Stop(absl::Duration timeout) {
  return running() ? process_->Terminate(timeout) : 0;
}

std::string DaemonProcess::ReadLog() const {
  std::string out;
  for (const std::string& path : old_logs_) {
    absl::StatusOr<std::string> text = ReadFile(path);
    if (text.ok()) {
      absl::StrAppend(&out, "----- ", path, "\n", *text);
    }
  }
  if (process_ != nullptr) {
    absl::StrAppend(&out, "----- ", process_->log_path(), "\n", process_->ReadLog());
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Contentd

Contentd::Contentd(std::string dir, Options options)
    : dir_(std::move(dir)),
      options_(std::move(options)),
      root_(dir_ + "/root"),
      state_(dir_ + "/state"),
      address_(dir_ + "/cd.sock"),
      process_(dir_) {}

Contentd::~Contentd() = default;

absl::Status Contentd::Start() {
  if (running()) {
    return absl::OkStatus();
  }
  std::vector<std::string> argv = {testing::BinaryPath("services/contentd/contentd"),
                                    "--root",
                                    root_,
                                    "--state",
                                    state_,
                                    "--address",
                                    address_,
                                    "--default-namespace",
                                    options_.default_namespace,
                                    "--log-level",
                                    options_.log_level};
  if (!options_.nats_url.empty()) {
    argv.insert(argv.end(), {"--nats-url", options_.nats_url});
  }
  if (options_.metrics_port != 0) {
    argv.insert(argv.end(),
                {"--metrics-address", absl::StrCat("127.0.0.1:", options_.metrics_port)});
  }
  argv.insert(argv.end(), options_.extra_args.begin(), options_.extra_args.end());
  if (!options_.env.empty()) {
    argv.insert(argv.begin(), options_.env.begin(), options_.env.end());
    argv.insert(argv.begin(), "env");  // env(1) execs the daemon: the pid stays its own
  }
  return process_.StartServing("contentd", argv, address_);
}

void Contentd::Kill() { process_.Kill(); }

// 30 s, not 10: contentd can spend up to ~10 s in grpc_shutdown() after it logs "stopped"
// (reported; see integration/README.md), and a SIGKILL would turn that into a test failure.
int Contentd::Stop() { return process_.Stop(absl::Seconds(30)); }

// ---------------------------------------------------------------------------------------------
// Registry

Registry::Registry(std::string dir, Options options)
    : dir_(std::move(dir)), options_(std::move(options)) {}

std::string Registry::ConfigText() const {
  std::string config = absl::StrCat(
      "version: 0.1\n"
      "log:\n"
      "  level: info\n"
      "storage:\n"
      "  filesystem:\n"
      "    rootdirectory: ", dir_, "/registry\n"
      "  delete:\n"
      "    enabled: true\n"
      "http:\n"
      "  addr: 127.0.0.1:", port_, "\n");
  if (!options_.tls_cert.empty()) {
    absl::StrAppend(&config, "  tls:\n    certificate: ", options_.tls_cert, "\n    key: ",
                    options_.tls_key, "\n");
    if (!options_.tls_client_ca.empty()) {
      absl::StrAppend(&config, "    clientcas:\n      - ", options_.tls_client_ca, "\n");
    }
  }
  if (!options_.htpasswd.empty()) {
    absl::StrAppend(&config, "auth:\n  htpasswd:\n    realm: berth-test\n    path: ",
                    options_.htpasswd, "\n");
  } else if (!options_.token_realm.empty()) {
    absl::StrAppend(&config, "auth:\n  token:\n    realm: ", options_.token_realm,
                    "\n    service: ", options_.token_service, "\n    issuer: ",
                    options_.token_issuer, "\n    rootcertbundle: ",
                    options_.token_rootcertbundle, "\n");
  }
  return config;
}

Registry::~Registry() { Stop(); }

int Registry::CountRequests(absl::string_view uri_part) const {
  int count = 0;
  for (absl::string_view line : absl::StrSplit(ReadLog(), '\n')) {
    if (absl::StrContains(line, "response completed") && absl::StrContains(line, uri_part)) {
      ++count;
    }
  }
  return count;
}

std::string Registry::host() const { return absl::StrCat("127.0.0.1:", port_); }

absl::Status Registry::Start() {
  absl::Status status = MakeDir(dir_ + "/registry");
  if (!status.ok()) {
    return status;
  }
  std::string last_log;
  for (int attempt = 0; attempt < 3; ++attempt) {
    port_ = testing::FreeTcpPort();
    std::string config = ConfigText();
    std::string config_path = dir_ + "/registry.yml";
    status = WriteTextFile(config_path, config);
    if (!status.ok()) {
      return status;
    }
    process_ = std::make_unique<testing::Process>(
        std::vector<std::string>{"docker-registry", "serve", config_path}, dir_);
    bool ready = testing::WaitFor(
        [&] {
          if (process_->TryReap()) {
            return true;
          }
          // Any HTTP answer will do: /v2/ is 401 behind auth.
          std::vector<std::string> curl = {
              "curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}",
              absl::StrCat(options_.tls_cert.empty() ? "http://" : "https://", host(), "/v2/")};
          if (!options_.tls_probe_cert.empty()) {
            curl.insert(curl.end(), {"--cert", options_.tls_probe_cert, "--key",
                                     options_.tls_probe_key});
          }
          std::string code = testing::RunCommand(curl);
          return !code.empty() && code != "000";
        },
        absl::Seconds(20));
    if (ready && process_->running()) {
      return absl::OkStatus();
    }
    last_log = process_->ReadLog();
    process_.reset();  // the port was taken, or it never answered: try another port
  }
  return absl::UnavailableError(absl::StrCat("docker-registry did not come up; log:\n", last_log));
}

int Registry::Stop() {
  int status = 0;
  if (process_ != nullptr && process_->running()) {
    status = process_->Terminate();
  }
  return status;
}

std::string Registry::ReadLog() const { return process_ ? process_->ReadLog() : std::string(); }

absl::Status Registry::Push(const std::string& layout, const std::string& tag,
                            const std::string& name, const std::string& credentials) {
  std::vector<std::string> argv = {"skopeo", "copy", "--dest-tls-verify=false"};
  if (!credentials.empty()) {
    argv.push_back("--dest-creds=" + credentials);
  }
  argv.push_back(absl::StrCat("oci:", layout, ":", tag));
  argv.push_back(absl::StrCat("docker://", host(), "/", name, ":", tag));
  int code = 0;
  std::string out = testing::RunCommand(argv, &code);
  if (code != 0) {
    return absl::InternalError(absl::StrCat("skopeo copy failed (", code, "): ", out));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Containerd

Containerd::Containerd(std::string dir, Options options)
    : dir_(std::move(dir)),
      options_(std::move(options)),
      root_(dir_ + "/ctd-root"),
      state_(dir_ + "/ctd-state"),
      address_(dir_ + "/ctd.sock"),
      config_path_(dir_ + "/containerd.toml"),
      process_(dir_) {}

Containerd::~Containerd() { Stop(); }

std::string Containerd::ConfigText() const {
  std::vector<std::string> disabled = {"\"io.containerd.grpc.v1.cri\""};
  if (!options_.content_proxy_address.empty()) {
    disabled.push_back("\"io.containerd.content.v1.content\"");
  }
  std::string text = absl::StrCat(
      "version = 2\n"
      "root = ", TomlString(root_), "\n"
      "state = ", TomlString(state_), "\n"
      "disabled_plugins = [", absl::StrJoin(disabled, ", "), "]\n"
      "\n"
      "[grpc]\n"
      "  address = ", TomlString(address_), "\n"
      "\n"
      "[ttrpc]\n"
      "  address = ", TomlString(address_ + ".ttrpc"), "\n"
      "\n"
      "[debug]\n"
      "  level = \"debug\"\n"
      "\n"
      "[plugins.\"io.containerd.internal.v1.opt\"]\n"
      "  path = ", TomlString(dir_ + "/ctd-opt"), "\n");
  if (options_.disable_gc) {
    // The images and leases services need a GC plugin, so keep it but never let it run.
    absl::StrAppend(&text,
                    "\n"
                    "[plugins.\"io.containerd.gc.v1.scheduler\"]\n"
                    "  deletion_threshold = 0\n"
                    "  mutation_threshold = 1000000000\n"
                    "  schedule_delay = \"0s\"\n"
                    "  startup_delay = \"100000h\"\n");
  }
  if (!options_.content_proxy_address.empty()) {
    absl::StrAppend(&text,
                    "\n"
                    "[proxy_plugins.berth]\n"
                    "  type = \"content\"\n"
                    "  address = ", TomlString(options_.content_proxy_address), "\n");
  }
  if (!options_.snapshot_proxy_address.empty()) {
    absl::StrAppend(&text,
                    "\n"
                    "[proxy_plugins.", TomlString(options_.snapshot_proxy_name), "]\n"
                    "  type = \"snapshot\"\n"
                    "  address = ", TomlString(options_.snapshot_proxy_address), "\n");
  }
  return text;
}

absl::Status Containerd::Start() {
  if (running()) {
    return absl::OkStatus();
  }
  absl::Status status = WriteTextFile(config_path_, ConfigText());
  if (!status.ok()) {
    return status;
  }
  bool up = process_.Start(
      {"containerd", "--config", config_path_},
      [&] {
        if (!testing::WaitForUnixSocket(address_, absl::ZeroDuration())) {
          return false;
        }
        return Ctr(address_, "", {"version"}).exit_code == 0;
      },
      absl::Seconds(30));
  if (!up) {
    return absl::UnavailableError(absl::StrCat("containerd did not come up; config:\n",
                                               ConfigText(), "log:\n", ReadLog()));
  }
  return absl::OkStatus();
}

int Containerd::Stop() { return process_.Stop(absl::Seconds(20)); }

void Containerd::Kill() { process_.Kill(); }

// ---------------------------------------------------------------------------------------------
// Helpers

namespace {

std::unique_ptr<grpc::ClientContext> ContentContext(const std::string& ns) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (!ns.empty()) {
    ctx->AddMetadata("containerd-namespace", ns);
  }
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  return ctx;
}

absl::Status FromGrpc(const grpc::Status& status, absl::string_view what) {
  absl::Status converted = FromGrpcStatus(status);
  if (converted.ok()) {
    return converted;
  }
  return absl::Status(converted.code(), absl::StrCat(what, ": ", converted.message()));
}

}  // namespace

absl::StatusOr<std::string> CommitBlob(containerd::services::content::v1::Content::Stub& stub,
                                       const std::string& ns, const std::string& ref,
                                       const std::string& data) {
  namespace api = containerd::services::content::v1;
  auto ctx = ContentContext(ns);
  auto stream = stub.Write(ctx.get());
  api::WriteContentRequest req;
  req.set_action(api::COMMIT);
  req.set_ref(ref);
  req.set_total(static_cast<int64_t>(data.size()));
  req.set_expected(Sha256Digest(data));
  req.set_data(data);
  api::WriteContentResponse resp;
  std::string digest;
  if (stream->Write(req)) {
    stream->WritesDone();
    if (stream->Read(&resp)) {
      digest = resp.digest();
    }
    api::WriteContentResponse ignored;
    while (stream->Read(&ignored)) {
    }
  }
  absl::Status status = FromGrpc(stream->Finish(), absl::StrCat("write ", ref));
  if (!status.ok()) {
    return status;
  }
  if (digest != Sha256Digest(data)) {
    return absl::InternalError(absl::StrCat("write ", ref, ": committed digest \"", digest,
                                            "\", want ", Sha256Digest(data)));
  }
  return digest;
}

absl::Status DeleteBlob(containerd::services::content::v1::Content::Stub& stub,
                        const std::string& ns, const std::string& digest) {
  containerd::services::content::v1::DeleteContentRequest req;
  req.set_digest(digest);
  google::protobuf::Empty resp;
  return FromGrpc(stub.Delete(ContentContext(ns).get(), req, &resp),
                  absl::StrCat("delete ", digest));
}

absl::Status MakeTestImage(const std::string& layout, const std::string& tag) {
  int code = 0;
  std::string out = testing::RunCommand(
      std::vector<std::string>{testing::SourcePath("integration/scripts/make-test-image.sh"),
                               layout, tag},
      &code);
  if (code != 0) {
    return absl::InternalError(absl::StrCat("make-test-image.sh failed (", code, "): ", out));
  }
  return absl::OkStatus();
}

std::vector<std::string> ListFiles(const std::string& dir) {
  std::vector<std::string> out;
  ListFilesInto(dir, "", &out);
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

std::string Sha256Digest(const std::string& data) { return Sha256Of(data).ToString(); }

std::string RandomBytes(size_t size, uint32_t seed) {
  std::mt19937 gen(seed);
  std::string out(size, '\0');
  size_t i = 0;
  for (; i + 4 <= size; i += 4) {
    uint32_t v = gen();
    memcpy(&out[i], &v, 4);
  }
  for (; i < size; ++i) {
    out[i] = static_cast<char>(gen());
  }
  return out;
}

namespace {
size_t AppendToString(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}
}  // namespace

// GET http://127.0.0.1:port/path; stores the HTTP status in *code.
std::string HttpGet(int port, const std::string& path, long* code) {
  std::string body;
  CURL* curl = curl_easy_init();
  *code = 0;
  if (curl == nullptr) {
    return "curl_easy_init failed";
  }
  std::string url = absl::StrCat("http://127.0.0.1:", port, path);
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &AppendToString);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, 10L);
  curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
  CURLcode rc = curl_easy_perform(curl);
  if (rc == CURLE_OK) {
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, code);
  } else {
    body = curl_easy_strerror(rc);
  }
  curl_easy_cleanup(curl);
  return body;
}

// The sample lines of metric `name` (exactly that name, with or without labels) whose label
// text contains every string in `label_parts`.
std::vector<std::string> MetricSamples(const std::string& text, const std::string& name,
                                       const std::vector<std::string>& label_parts) {
  std::vector<std::string> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, "#")) {
      continue;
    }
    if (!absl::StartsWith(line, name)) {
      continue;
    }
    char next = line.size() > name.size() ? line[name.size()] : '\0';
    if (next != '{' && next != ' ') {
      continue;  // a longer name with this prefix
    }
    bool match = true;
    for (const std::string& part : label_parts) {
      match = match && absl::StrContains(line, part);
    }
    if (match) {
      out.emplace_back(line);
    }
  }
  return out;
}

// The sum of the values of the matching samples; -1 if there are none.
double MetricValue(const std::string& text, const std::string& name,
                   const std::vector<std::string>& label_parts) {
  std::vector<std::string> samples = MetricSamples(text, name, label_parts);
  if (samples.empty()) {
    return -1;
  }
  double sum = 0;
  for (const std::string& sample : samples) {
    std::vector<std::string> fields = absl::StrSplit(sample, ' ', absl::SkipEmpty());
    double v = 0;
    if (fields.size() < 2 || !absl::SimpleAtod(fields[1], &v)) {
      return -1;  // not a sample line
    }
    sum += v;
  }
  return sum;
}

}  // namespace berth::integration
