#include "tools/berth/container_setup.h"

#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <future>
#include <iostream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "lib/base/grpc_status.h"
#include "lib/base/identifiers.h"
#include "lib/base/posix.h"
#include "lib/base/random.h"
#include "lib/base/status_macros.h"
#include "lib/images/oci.h"
#include "lib/images/reference.h"

namespace berth::cli {
namespace {

namespace tasks = ::containerd::services::tasks::v1;

bool HasDotDot(absl::string_view path) {
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "..") {
      return true;
    }
  }
  return false;
}

// Whether a user spec ("name", "uid:group", ...) names a user or group that must be looked up
// in the image's files.
bool NeedsLookup(absl::string_view user) {
  for (absl::string_view part : absl::StrSplit(user, ':')) {
    uint32_t n;
    if (!part.empty() && !absl::SimpleAtoi(part, &n)) {
      return true;
    }
  }
  return false;
}

// containerd's readonly temp mount: an overlay loses its upperdir and workdir (the upper
// becomes the top lowerdir), everything gets "ro".
std::vector<mount::Mount> ReadonlyMounts(std::vector<mount::Mount> mounts) {
  for (mount::Mount& m : mounts) {
    if (m.type == "overlay") {
      std::optional<std::string> upper = mount::OptionValue(m.options, "upperdir");
      std::optional<std::string> lower = mount::OptionValue(m.options, "lowerdir");
      std::vector<std::string> options;
      for (const std::string& o : m.options) {
        if (!absl::StartsWith(o, "upperdir=") && !absl::StartsWith(o, "workdir=") &&
            !absl::StartsWith(o, "lowerdir=") && o != "rw") {
          options.push_back(o);
        }
      }
      std::string lowers = upper.has_value() ? *upper : "";
      if (lower.has_value()) {
        lowers = lowers.empty() ? *lower : absl::StrCat(lowers, ":", *lower);
      }
      options.push_back("lowerdir=" + lowers);
      m.options = std::move(options);
    }
    m.options.erase(std::remove(m.options.begin(), m.options.end(), "rw"), m.options.end());
    m.options.push_back("ro");
  }
  return mounts;
}

// Runs GenerateSpec with `mounts` mounted read-only at a temporary directory as the rootfs for
// user and group names, as containerd's WithUserName does; unmounts before returning.
absl::StatusOr<nlohmann::json> GenerateSpecInRootfs(const images::ImageConfig& config,
                                                    oci::SpecOptions opts,
                                                    const std::vector<mount::Mount>& mounts) {
  char dir[] = "/tmp/berth-rootfs-XXXXXX";
  if (::mkdtemp(dir) == nullptr) {
    return ErrnoStatus(errno, "temporary directory for the user lookup");
  }
  absl::Status mounted = mount::SystemMounter().MountAll(ReadonlyMounts(mounts), dir);
  if (!mounted.ok()) {
    ::rmdir(dir);
    return mounted;
  }
  opts.rootfs_path = dir;
  absl::StatusOr<nlohmann::json> spec = oci::GenerateSpec(config, opts);
  absl::Status unmounted = mount::SystemMounter().Unmount(dir);
  if (unmounted.ok()) {
    ::rmdir(dir);
  }
  BERTH_RETURN_IF_ERROR(unmounted);
  return spec;
}

// The image's config, read the way containerd's client does: the record's target from imaged,
// an index resolved to this host's manifest, the manifest and config from contentd.
absl::StatusOr<images::ImageConfig> ReadImageConfig(Clients& clients, const std::string& name) {
  Context ctx = clients.session.context();
  absl::StatusOr<images::Image> image = clients.images.Get(ctx, name);
  if (!image.ok()) {
    return clients.session.Explain("imaged", image.status());
  }
  oci::Descriptor target = image->target;
  // Each document is read with the size its descriptor gives (one Read call, no Info call
  // before it). Every blob was checked against its digest and its descriptor's size when it
  // was pulled or imported, so a size that is off means a corrupt record: a size too large
  // reads short (DataLoss), one too small cuts the JSON (its parse fails). A size out of a
  // document's bounds is read the long way, with the size contentd has. (Hashing it again
  // here would cost more than the round trip: OpenSSL's start alone is 5M instructions.)
  auto read = [&](const oci::Descriptor& desc) -> absl::StatusOr<std::string> {
    absl::StatusOr<std::string> blob =
        desc.size > 0 && desc.size <= images::kMaxDocumentSize
            ? content::ReadBlob(*clients.content.OpenReaderOfSize(ctx, desc.digest, desc.size),
                                desc.digest)
            : content::ReadBlob(clients.content, ctx, desc.digest);
    if (!blob.ok()) {
      return clients.session.Explain("contentd", blob.status());
    }
    return blob;
  };
  if (images::IsIndexType(target.media_type)) {
    BERTH_ASSIGN_OR_RETURN(std::string data, read(target));
    BERTH_ASSIGN_OR_RETURN(images::Index index, images::ParseIndex(data, target.media_type));
    BERTH_ASSIGN_OR_RETURN(target,
                           images::ChooseManifest(index, images::HostPlatform(), name));
  }
  BERTH_ASSIGN_OR_RETURN(std::string manifest_data, read(target));
  BERTH_ASSIGN_OR_RETURN(images::Manifest manifest,
                         images::ParseManifest(manifest_data, target.media_type));
  BERTH_ASSIGN_OR_RETURN(std::string config_data, read(manifest.config));
  return images::ParseImageConfig(config_data);
}

// The record's name for what the user typed: imaged keeps normalised references
// (docker.io/library/busybox:latest for busybox).
std::string ImageName(const std::string& text) {
  absl::StatusOr<images::Reference> ref = images::Reference::Parse(text);
  return ref.ok() ? ref->String() : text;
}

}  // namespace

absl::StatusOr<oci::BindMount> ParseVolume(absl::string_view text) {
  std::vector<std::string> parts = absl::StrSplit(text, ':');
  if (parts.size() < 2 || parts.size() > 3) {
    return UsageError(absl::StrCat("volume \"", text, "\": want SRC:DST[:ro]"));
  }
  oci::BindMount bind{parts[0], parts[1], false};
  if (parts.size() == 3) {
    if (parts[2] != "ro" && parts[2] != "rw") {
      return UsageError(absl::StrCat("volume \"", text, "\": mode must be ro or rw"));
    }
    bind.read_only = parts[2] == "ro";
  }
  for (const std::string* path : {&bind.source, &bind.destination}) {
    if (!absl::StartsWith(*path, "/")) {
      return UsageError(absl::StrCat("volume \"", text, "\": \"", *path,
                                     "\" must be an absolute path"));
    }
    if (HasDotDot(*path)) {
      return UsageError(absl::StrCat("volume \"", text, "\": \"", *path,
                                     "\" must not contain \"..\""));
    }
  }
  return bind;
}

absl::StatusOr<int64_t> ParseMemory(absl::string_view text) {
  std::string lower = absl::AsciiStrToLower(text);
  int64_t unit = 1;
  if (!lower.empty() && lower.back() == 'b') {
    lower.pop_back();
  }
  if (!lower.empty()) {
    switch (lower.back()) {
      case 'k': unit = int64_t{1} << 10; break;
      case 'm': unit = int64_t{1} << 20; break;
      case 'g': unit = int64_t{1} << 30; break;
      default: break;
    }
    if (unit != 1) {
      lower.pop_back();
    }
  }
  int64_t n = 0;
  if (!absl::SimpleAtoi(lower, &n) || n <= 0 || n > (INT64_MAX / unit)) {
    return UsageError(absl::StrCat("--memory \"", text, "\": want a positive size (512m, 1g)"));
  }
  return n * unit;
}

absl::StatusOr<oci::SpecOptions> SpecOptionsFromFlags(const ContainerFlags& flags,
                                                      const std::string& id,
                                                      const std::string& ns) {
  oci::SpecOptions opts;
  opts.id = id;
  opts.ns = ns;
  opts.args = flags.command;
  opts.env = flags.env;
  for (const std::string& e : flags.env) {
    if (e.empty() || e[0] == '=') {
      return UsageError(absl::StrCat("-e \"", e, "\": want KEY=VALUE"));
    }
  }
  for (const std::string& v : flags.volumes) {
    BERTH_ASSIGN_OR_RETURN(oci::BindMount bind, ParseVolume(v));
    opts.binds.push_back(bind);
  }
  if (flags.net.empty() || flags.net == "none") {
  } else if (flags.net == "host") {
    opts.host_network = true;
    opts.hosts_path = "/etc/hosts";
    opts.resolv_conf_path = "/etc/resolv.conf";
  } else if (absl::StartsWith(flags.net, "/") && !HasDotDot(flags.net)) {
    opts.netns_path = flags.net;
  } else {
    return UsageError(absl::StrCat("--net \"", flags.net,
                                   "\": want host, none or an absolute network namespace path"));
  }
  if (!flags.memory.empty()) {
    BERTH_ASSIGN_OR_RETURN(opts.memory_limit_bytes, ParseMemory(flags.memory));
  }
  if (flags.cpus < 0) {
    return UsageError("--cpus must not be negative");
  }
  if (flags.pids_limit < 0) {
    return UsageError("--pids-limit must not be negative");
  }
  opts.cpus = flags.cpus;
  opts.pids_limit = flags.pids_limit;
  opts.user = flags.user;
  if (!flags.workdir.empty() && !absl::StartsWith(flags.workdir, "/")) {
    return UsageError(absl::StrCat("--workdir \"", flags.workdir, "\": must be absolute"));
  }
  opts.working_dir = flags.workdir;
  opts.hostname = flags.hostname.empty() ? id.substr(0, 12) : flags.hostname;
  opts.terminal = flags.tty;
  if (flags.tty) {
    // The console starts at this terminal's size (runc applies process.consoleSize), so the
    // process never sees 0x0 before the first ResizePty.
    struct winsize size {};
    if (::ioctl(STDIN_FILENO, TIOCGWINSZ, &size) == 0 ||
        ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0) {
      opts.console_height = size.ws_row;
      opts.console_width = size.ws_col;
    }
  }
  return opts;
}

void Undo::Add(std::string what, std::function<absl::Status()> action) {
  actions_.emplace_back(std::move(what), std::move(action));
}

namespace {

void ReportCleanup(const std::string& what, const absl::Status& status) {
  if (!status.ok() && !absl::IsNotFound(status)) {
    std::cerr << "berth: cleanup: " << what << ": " << status.message() << '\n';
  }
}

}  // namespace

void Undo::Run() {
  while (!actions_.empty()) {
    auto [what, action] = std::move(actions_.back());
    actions_.pop_back();
    ReportCleanup(what, action());
  }
}

void Undo::RunConcurrently() {
  std::vector<absl::Status> results(actions_.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < actions_.size(); ++i) {
    threads.emplace_back([this, &results, i] { results[i] = actions_[i].second(); });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  for (size_t i = actions_.size(); i-- > 0;) {
    ReportCleanup(actions_[i].first, results[i]);
  }
  actions_.clear();
}

Clients::Clients(Session& s, const std::string& snapshotter)
    : session(s),
      images(s.Channel("imaged")),
      content(s.Channel("contentd")),
      snapshots(s.Channel("snapshotd"), snapshotter),
      containers(s.Channel("execd")),
      tasks(::containerd::services::tasks::v1::Tasks::NewStub(s.Channel("execd"))) {}

std::unique_ptr<grpc::ClientContext> Clients::TaskContext() const {
  auto context = std::make_unique<grpc::ClientContext>();
  session.Prepare(context.get());
  return context;
}

absl::Status Clients::TaskStatus(const grpc::Status& status) {
  return session.Explain("execd", FromGrpcStatus(status));
}

absl::StatusOr<CreatedContainer> CreateContainer(Clients& clients, const ContainerFlags& flags,
                                                 const std::map<std::string, std::string>& labels,
                                                 Undo& undo) {
  Session& session = clients.session;
  Context ctx = session.context();
  CreatedContainer created;
  created.id = flags.name.empty() ? RandomHex(16) : flags.name;
  absl::Status valid = ValidateIdentifier("container name", created.id);
  if (!valid.ok()) {
    return UsageError(valid.message());
  }
  BERTH_ASSIGN_OR_RETURN(oci::SpecOptions opts,
                         SpecOptionsFromFlags(flags, created.id, session.ns()));
  std::string image_name = ImageName(flags.image);
  // Whether the id is taken is asked of execd while imaged and contentd are read.
  std::future<absl::StatusOr<containers::Container>> taken =
      std::async(std::launch::async, [&clients, ctx, id = created.id] {
        return clients.containers.Get(ctx, id);
      });
  BERTH_ASSIGN_OR_RETURN(images::ImageConfig config, ReadImageConfig(clients, image_name));
  if (config.diff_ids.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("image ", image_name, " has no layers to make a root filesystem from"));
  }
  // Everything but the user lookup is checked here, before anything exists.
  bool lookup = NeedsLookup(opts.user.empty() ? config.user : opts.user);
  oci::SpecOptions check = opts;
  if (lookup) {
    check.user = "0";
  }
  BERTH_ASSIGN_OR_RETURN(created.spec, oci::GenerateSpec(config, check));
  absl::StatusOr<containers::Container> existing = taken.get();
  if (existing.ok()) {
    return absl::AlreadyExistsError(absl::StrCat("container ", created.id, " already exists"));
  }
  if (!absl::IsNotFound(existing.status())) {
    return session.Explain("execd", existing.status());
  }

  std::string chain = images::ChainIds(config.diff_ids).back();
  created.snapshot_key = created.id;
  auto prepare = [&clients, ctx, key = created.snapshot_key, chain] {
    return clients.snapshots.Prepare(
        ctx, key, chain,
        {{"containerd.io/gc.root", absl::FormatTime(absl::RFC3339_sec, absl::Now(),
                                                    absl::UTCTimeZone())}});
  };
  auto record = [&](const nlohmann::json& spec) {
    containers::Container r;
    r.id = created.id;
    r.labels = LabelMap(labels.begin(), labels.end());
    r.image = image_name;
    r.runtime.name = flags.runtime;
    r.spec = {kSpecTypeUrl, spec.dump()};
    r.snapshotter = flags.snapshotter;
    r.snapshot_key = created.snapshot_key;
    return r;
  };
  auto prepared = [&](absl::StatusOr<std::vector<mount::Mount>> mounts) -> absl::Status {
    if (absl::IsNotFound(mounts.status())) {
      return absl::FailedPreconditionError(absl::StrCat(
          "image ", image_name, " is not unpacked (no snapshot ", chain, "): pull it again"));
    }
    BERTH_RETURN_IF_ERROR(session.Explain("snapshotd", mounts.status()));
    created.rootfs = *mounts;
    undo.Add("remove snapshot " + created.snapshot_key,
             [&clients, ctx, key = created.snapshot_key] {
               return clients.snapshots.Remove(ctx, key);
             });
    return absl::OkStatus();
  };
  absl::StatusOr<containers::Container> stored;
  if (lookup) {
    // The spec needs the rootfs (the image's /etc/passwd): the snapshot first, then the record.
    BERTH_RETURN_IF_ERROR(prepared(prepare()));
    BERTH_ASSIGN_OR_RETURN(created.spec, GenerateSpecInRootfs(config, opts, created.rootfs));
    stored = clients.containers.Create(ctx, record(created.spec));
  } else {
    // The spec is complete without the rootfs: the snapshot (snapshotd) and the record (execd),
    // each a commit with fsyncs in its daemon, are made at once.
    std::future<absl::StatusOr<std::vector<mount::Mount>>> preparing =
        std::async(std::launch::async, prepare);
    stored = clients.containers.Create(ctx, record(created.spec));
    absl::Status snapshot = prepared(preparing.get());
    if (!snapshot.ok()) {
      if (stored.ok()) {
        clients.containers.Delete(ctx, created.id).IgnoreError();
      }
      return snapshot;
    }
  }
  BERTH_RETURN_IF_ERROR(session.Explain("execd", stored.status()));
  undo.Add("remove container " + created.id,
           [&clients, ctx, id = created.id] { return clients.containers.Delete(ctx, id); });
  return created;
}

absl::Status RemoveContainer(Clients& clients, const std::string& id, bool force) {
  Context ctx = clients.session.context();
  absl::StatusOr<containers::Container> record = clients.containers.Get(ctx, id);
  if (!record.ok()) {
    return clients.session.Explain("execd", record.status());
  }
  tasks::GetRequest get;
  get.set_container_id(id);
  tasks::GetResponse task;
  grpc::Status got = clients.tasks->Get(clients.TaskContext().get(), get, &task);
  if (got.ok()) {
    auto status = task.process().status();
    if (status != ::containerd::v1::types::STOPPED && status != ::containerd::v1::types::CREATED) {
      if (!force) {
        return absl::FailedPreconditionError(absl::StrCat(
            "container ", id, " is running: stop it first or use rm -f"));
      }
      tasks::KillRequest kill;
      kill.set_container_id(id);
      kill.set_signal(9);
      kill.set_all(true);
      google::protobuf::Empty empty;
      grpc::Status killed = clients.tasks->Kill(clients.TaskContext().get(), kill, &empty);
      if (!killed.ok() && killed.error_code() != grpc::StatusCode::NOT_FOUND) {
        return clients.TaskStatus(killed);
      }
      tasks::WaitRequest wait;
      wait.set_container_id(id);
      tasks::WaitResponse waited;
      BERTH_RETURN_IF_ERROR(
          clients.TaskStatus(clients.tasks->Wait(clients.TaskContext().get(), wait, &waited)));
    }
    tasks::DeleteTaskRequest del;
    del.set_container_id(id);
    tasks::DeleteResponse deleted;
    grpc::Status gone = clients.tasks->Delete(clients.TaskContext().get(), del, &deleted);
    if (!gone.ok() && gone.error_code() != grpc::StatusCode::NOT_FOUND) {
      return clients.TaskStatus(gone);
    }
  } else if (got.error_code() != grpc::StatusCode::NOT_FOUND &&
             got.error_code() != grpc::StatusCode::UNIMPLEMENTED) {
    // (An execd without the Tasks service runs no tasks.)
    return clients.TaskStatus(got);
  }
  BERTH_RETURN_IF_ERROR(clients.session.Explain("execd", clients.containers.Delete(ctx, id)));
  if (!record->snapshot_key.empty()) {
    snapshots::GrpcSnapshotter snapshots(clients.session.Channel("snapshotd"),
                                         record->snapshotter);
    absl::Status removed = snapshots.Remove(ctx, record->snapshot_key);
    if (!removed.ok() && !absl::IsNotFound(removed)) {
      return clients.session.Explain("snapshotd", removed);
    }
  }
  auto log = record->labels.find(kLogUriLabel);
  if (log != record->labels.end()) {
    std::string path = PathOfFileUri(log->second);
    if (!path.empty()) {
      ::unlink(path.c_str());
      ::unlink(DetachedStdinPath(path).c_str());  // `run -d -i`'s
    }
  }
  return absl::OkStatus();
}

std::string PathOfFileUri(absl::string_view uri) {
  constexpr absl::string_view kPrefix = "file://";
  return absl::StartsWith(uri, kPrefix) ? std::string(uri.substr(kPrefix.size())) : "";
}

std::string CliRunDir() {
  const char* dir = ::getenv("BERTH_RUN_DIR");
  return dir != nullptr && *dir != '\0' ? dir : "/run/berth/cli";
}

}  // namespace berth::cli
