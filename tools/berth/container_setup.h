#pragma once

// What `berth run` and `berth create` make before a task exists, the way containerd's clients
// make it: the image's record from imaged, its manifest and config from contentd, an active
// snapshot on the image's chain from snapshotd, the OCI spec from lib/oci, and the container
// record on execd. Everything is checked that can be checked before anything is made; a
// failure after that removes what was made, in reverse order (Undo).

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "containerd/services/tasks/v1/tasks.grpc.pb.h"
#include "lib/containers/grpc_container_store.h"
#include "lib/content/grpc_content_store.h"
#include "lib/images/grpc_image_store.h"
#include "lib/mount/mount.h"
#include "lib/oci/spec.h"
#include "lib/snapshots/grpc_snapshotter.h"
#include "tools/berth/cli.h"

namespace berth::cli {

inline constexpr char kSpecTypeUrl[] = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
inline constexpr char kProcessTypeUrl[] =
    "types.containerd.io/opencontainers/runtime-spec/1/Process";
inline constexpr char kDefaultRuntime[] = "io.containerd.runc.v2";
// Labels berth's CLI puts on container records.
inline constexpr char kLogUriLabel[] = "berth.io/log-uri";        // file:///path of a detached log
inline constexpr char kExitStatusLabel[] = "berth.io/exit-status";  // last exit, once the task is gone

// The flags `run` and `create` share.
struct ContainerFlags {
  std::string image;
  std::vector<std::string> command;
  std::vector<std::string> env;
  std::vector<std::string> volumes;  // SRC:DST[:ro]
  std::string net;                   // "", none, host or a netns path
  std::string memory;                // 512m, 1g, bytes
  double cpus = 0;
  int64_t pids_limit = 0;
  std::string user;
  std::string workdir;
  std::string name;
  std::string hostname;
  std::string runtime = kDefaultRuntime;
  std::string snapshotter = "overlayfs";
  bool tty = false;
};

// "SRC:DST[:ro|:rw]" with both paths absolute and no ".." component. Usage error otherwise.
absl::StatusOr<oci::BindMount> ParseVolume(absl::string_view text);
// "512m", "1g", "1024k", "100" (bytes); positive. Usage error otherwise.
absl::StatusOr<int64_t> ParseMemory(absl::string_view text);
// Everything lib/oci needs except the image: a usage error names the flag. `id` must already be
// a valid identifier.
absl::StatusOr<oci::SpecOptions> SpecOptionsFromFlags(const ContainerFlags& flags,
                                                      const std::string& id,
                                                      const std::string& ns);

// Cleanup actions run in reverse order of Add, unless Dismiss()ed. Each failure is printed on
// stderr ("berth: cleanup: ..."), and the others still run.
class Undo {
 public:
  Undo() = default;
  Undo(const Undo&) = delete;
  Undo& operator=(const Undo&) = delete;
  ~Undo() { Run(); }
  void Add(std::string what, std::function<absl::Status()> action);
  void Run();
  // Runs every action at once, each on its own thread, and waits for all: for actions that do
  // not depend on each other (a container record and its snapshot, in two daemons).
  void RunConcurrently();
  void Dismiss() { actions_.clear(); }
  // Forgets the action added last (it was done another way).
  void DropLast() { actions_.pop_back(); }

 private:
  std::vector<std::pair<std::string, std::function<absl::Status()>>> actions_;
};

// The clients one container command needs, on the session's channels.
class Clients {
 public:
  explicit Clients(Session& session, const std::string& snapshotter = "overlayfs");
  Session& session;
  images::GrpcImageStore images;
  content::GrpcContentStore content;
  snapshots::GrpcSnapshotter snapshots;
  containers::GrpcContainerStore containers;
  std::unique_ptr<::containerd::services::tasks::v1::Tasks::Stub> tasks;

  // A ClientContext with the namespace and the command's deadline, for the Tasks stub.
  std::unique_ptr<grpc::ClientContext> TaskContext() const;
  // execd's answer to a Tasks call, explained (Session::Explain).
  absl::Status TaskStatus(const grpc::Status& status);
};

// A container record made by CreateContainer: its id and rootfs mounts.
struct CreatedContainer {
  std::string id;
  std::string snapshot_key;
  std::vector<mount::Mount> rootfs;
  nlohmann::json spec;
};

// Makes the snapshot and the record for `flags` (id: --name, or a random one), registering
// their removal in `undo`. `labels` go on the record.
absl::StatusOr<CreatedContainer> CreateContainer(Clients& clients, const ContainerFlags& flags,
                                                 const std::map<std::string, std::string>& labels,
                                                 Undo& undo);

// Removes a container's task (killing it first when `force`), record and snapshot, and its log
// file. A running task without `force` is FailedPrecondition.
absl::Status RemoveContainer(Clients& clients, const std::string& id, bool force);

// The record of container `id`; execd's NotFound explained.
absl::StatusOr<containers::Container> GetContainer(Clients& clients, const std::string& id);

class TaskIo;
// Copies `io` while the process (`exec_id`, empty: the task's init) runs: Wait is called,
// then `start`; with `terminal` the CLI's terminal is raw and its size follows (ResizePty);
// signals to the CLI are sent to the process (Kill). Returns the exit status once the process
// exited and its output is copied.
absl::StatusOr<uint32_t> AttachAndWait(Clients& clients, const std::string& id,
                                       const std::string& exec_id, TaskIo* io, bool terminal,
                                       const std::function<absl::Status()>& start);

// The path of a file:// URI; empty for anything else.
std::string PathOfFileUri(absl::string_view uri);
// The FIFO a detached container with -i reads as stdin, beside its log file: open while no one
// has written to it and closed it (the shim sees no end of input until then).
inline std::string DetachedStdinPath(const std::string& log_path) { return log_path + ".stdin"; }

// Where the CLI keeps its per-run FIFO directories and detached logs: $BERTH_RUN_DIR, or
// /run/berth/cli.
std::string CliRunDir();

}  // namespace berth::cli
