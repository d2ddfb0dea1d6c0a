// `berth import FILE|-` and `berth export FILE|- NAME...`: imaged's Distribution.Import and
// Export. The CLI reads and writes the tarball itself and streams it; imaged never sees a path.
// Import prints one line per blob state change ("DIGEST STATE SIZE") and "imported NAME
// DIGEST" per record (--json: one object a line per blob, then per record).

#include <fcntl.h>
#include <unistd.h>

#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "berth/distribution/v1/distribution.grpc.pb.h"
#include "lib/base/grpc_status.h"
#include "lib/base/posix.h"
#include "lib/base/status_macros.h"
#include "lib/base/unique_fd.h"
#include "tools/berth/commands.h"
#include "tools/berth/output.h"
#include "tools/berth/progress.h"

namespace berth::cli {
namespace {

namespace pb = ::berth::distribution::v1;

constexpr absl::string_view kDaemon = "imaged";
constexpr size_t kChunk = 1 << 20;

struct ImportArgs {
  std::string file;
  bool no_unpack = false;
  bool all_platforms = false;
  std::string platform;
  std::string index_name;
  std::string snapshotter;
};

struct ExportArgs {
  std::string file;
  std::vector<std::string> names;
  std::string platform;
  bool all_platforms = false;
};

absl::StatusOr<UniqueFd> OpenInput(const std::string& file) {
  UniqueFd fd(file == "-" ? ::dup(STDIN_FILENO) : ::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return ErrnoStatus(errno, absl::StrCat("opening ", file));
  }
  return fd;
}

// Sends the options, then the file in chunks, then half-closes. Stops when imaged ends the
// call (its status is what Finish reports); a read error is kept in *error.
void SendFile(grpc::ClientReaderWriter<pb::ImportRequest, pb::ImportProgress>& stream, int fd,
              pb::ImportRequest first, absl::Status* error) {
  std::string buf(kChunk, '\0');
  pb::ImportRequest message = std::move(first);
  while (true) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      *error = ErrnoStatus(errno, "reading the tarball");
      stream.WritesDone();
      return;
    }
    if (n == 0) {
      break;
    }
    message.set_data(buf.data(), static_cast<size_t>(n));
    if (!stream.Write(message)) {
      return;
    }
    message.Clear();
  }
  if (message.has_options()) {
    stream.Write(message);  // an empty file: the options alone
  }
  stream.WritesDone();
}

absl::Status Import(Session& session, const ImportArgs& args) {
  BERTH_ASSIGN_OR_RETURN(UniqueFd fd, OpenInput(args.file));
  pb::ImportRequest first;
  pb::ImportOptions* options = first.mutable_options();
  options->set_unpack(!args.no_unpack);
  options->set_all_platforms(args.all_platforms);
  options->set_platform(args.platform);
  options->set_index_name(args.index_name);
  options->set_snapshotter(args.snapshotter);
  auto stub = pb::Distribution::NewStub(session.Channel(kDaemon));
  grpc::ClientContext context;
  session.Prepare(&context);
  std::unique_ptr<grpc::ClientReaderWriter<pb::ImportRequest, pb::ImportProgress>> stream =
      stub->Import(&context);
  absl::Status read_error;
  std::thread sender(SendFile, std::ref(*stream), fd.get(), first, &read_error);
  std::vector<pb::PulledImage> images;
  ReadProgress<pb::ImportProgress>(*stream, session.json(), [&](const pb::ImportProgress& message) {
    images.insert(images.end(), message.images().begin(), message.images().end());
  });
  sender.join();
  absl::Status status = FromGrpcStatus(stream->Finish());
  if (!read_error.ok()) {
    return read_error;
  }
  if (!status.ok()) {
    return session.Explain(kDaemon, status);
  }
  for (const pb::PulledImage& image : images) {
    PrintImage(session.json(), "imported", image);
  }
  return absl::OkStatus();
}

absl::Status Export(Session& session, const ExportArgs& args) {
  const bool to_stdout = args.file == "-";
  UniqueFd fd(to_stdout ? ::dup(STDOUT_FILENO)
                        : ::open(args.file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                                 0644));
  if (!fd.valid()) {
    return ErrnoStatus(errno, absl::StrCat("creating ", args.file));
  }
  pb::ExportRequest request;
  for (const std::string& name : args.names) {
    request.add_names(name);
  }
  request.set_platform(args.platform);
  request.set_all_platforms(args.all_platforms);
  auto stub = pb::Distribution::NewStub(session.Channel(kDaemon));
  grpc::ClientContext context;
  session.Prepare(&context);
  std::unique_ptr<grpc::ClientReader<pb::ExportChunk>> reader = stub->Export(&context, request);
  pb::ExportChunk chunk;
  absl::Status written;
  while (written.ok() && reader->Read(&chunk)) {
    written = WriteFull(fd.get(), chunk.data(), to_stdout ? "stdout" : args.file);
  }
  if (!written.ok()) {
    context.TryCancel();
  }
  absl::Status status = FromGrpcStatus(reader->Finish());
  if (written.ok() && !status.ok()) {
    written = session.Explain(kDaemon, status);
  }
  if (!written.ok() && !to_stdout) {
    ::unlink(args.file.c_str());  // no half-written tarball left behind
  }
  return written;
}

}  // namespace

void RegisterArchiveCommands(CLI::App& root, Runner& runner) {
  auto import_args = std::make_shared<ImportArgs>();
  CLI::App* import = root.add_subcommand(
      "import", "Import an image tarball (OCI layout or docker save) through imaged");
  import->add_option("FILE", import_args->file, "The tarball, or - for stdin")->required();
  import->add_flag("--no-unpack", import_args->no_unpack, "Store the blobs only; make no snapshots");
  import->add_flag("--all-platforms", import_args->all_platforms,
                   "Require and keep every platform of a multi-platform image");
  import->add_option("--platform", import_args->platform, "os/arch[/variant] (default: this host)");
  import->add_option("--index-name", import_args->index_name,
                     "Name the whole archive's index as one more image");
  import->add_option("--snapshotter", import_args->snapshotter, "Snapshotter to unpack into");
  import->callback(
      runner.Wrap([import_args](Session& session) { return Import(session, *import_args); }));

  auto export_args = std::make_shared<ExportArgs>();
  CLI::App* exp = root.add_subcommand(
      "export", "Write images as an OCI image-layout tarball (readable by skopeo, ctr import)");
  exp->add_option("FILE", export_args->file, "The tarball to write, or - for stdout")->required();
  exp->add_option("NAME", export_args->names, "Image names, as `berth images ls` shows them")
      ->required();
  exp->add_option("--platform", export_args->platform, "os/arch[/variant] (default: this host)");
  exp->add_flag("--all-platforms", export_args->all_platforms, "Every platform of each image");
  exp->callback(
      runner.Wrap([export_args](Session& session) { return Export(session, *export_args); }));
}

}  // namespace berth::cli
