// `berth content ...`, on content::GrpcContentStore talking to contentd.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "lib/content/copy.h"
#include "lib/content/grpc_content_store.h"
#include "tools/berth/commands.h"
#include "tools/berth/output.h"

namespace berth::cli {
namespace {

constexpr absl::string_view kDaemon = "contentd";
// How much input one read takes and one Write sends (the writer splits at 1 MiB anyway).
constexpr size_t kChunk = 1 << 20;

nlohmann::json InfoJson(const content::Info& info) {
  return {{"digest", info.digest.ToString()},
          {"size", info.size},
          {"created_at", FormatTimestamp(info.created_at)},
          {"updated_at", FormatTimestamp(info.updated_at)},
          {"labels", info.labels}};
}

nlohmann::json StatusJson(const content::IngestStatus& status) {
  return {{"ref", status.ref},
          {"offset", status.offset},
          {"total", status.total},
          {"expected", status.expected.ToString()},
          {"started_at", FormatTimestamp(status.started_at)},
          {"updated_at", FormatTimestamp(status.updated_at)}};
}

std::string ErrnoText(absl::string_view what, int err) {
  return absl::StrCat(what, ": ", std::strerror(err));
}

// Reads up to `size` bytes, retrying on EINTR and short reads; returns the count (less than
// `size` only at the end of input).
absl::StatusOr<size_t> ReadFull(int fd, char* buf, size_t size, absl::string_view name) {
  size_t n = 0;
  while (n < size) {
    ssize_t r = ::read(fd, buf + n, size - n);
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r < 0) {
      return absl::UnavailableError(ErrnoText(absl::StrCat("read ", name), errno));
    }
    if (r == 0) {
      break;
    }
    n += static_cast<size_t>(r);
  }
  return n;
}

// The input of `content ingest` as a stream: a regular file skips by seeking (a resume does
// not read again what the ingest holds), a pipe by reading.
class FdSource : public ByteSource {
 public:
  FdSource(int fd, std::string name) : fd_(fd), name_(std::move(name)) {}
  absl::StatusOr<size_t> Read(char* buf, size_t size) override {
    return ReadFull(fd_, buf, size, name_);
  }
  absl::StatusOr<int64_t> Skip(int64_t count) override {
    struct stat st;
    if (::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode)) {
      off_t position = ::lseek(fd_, 0, SEEK_CUR);
      if (position >= 0) {
        int64_t skip = std::min(count, std::max<int64_t>(0, st.st_size - position));
        if (::lseek(fd_, position + skip, SEEK_SET) < 0) {
          return absl::UnavailableError(ErrnoText(absl::StrCat("seek ", name_), errno));
        }
        return skip;
      }
    }
    return ByteSource::Skip(count);
  }

 private:
  const int fd_;
  const std::string name_;
};

struct IngestArgs {
  std::string ref;
  std::string expected_digest;
  int64_t expected_size = 0;
  std::vector<std::string> labels;
  std::string file;
};

absl::Status PrintIngested(Session& session, const Digest& digest, int64_t size,
                           const std::string& ref) {
  if (session.json()) {
    PrintJson(std::cout, {{"ref", ref}, {"digest", digest.ToString()}, {"size", size}});
  } else {
    std::cout << digest.ToString() << '\n';
  }
  return absl::OkStatus();
}

absl::Status Ingest(Session& session, const IngestArgs& args) {
  Digest expected;
  if (!args.expected_digest.empty()) {
    absl::StatusOr<Digest> parsed = ParseDigestArg(args.expected_digest);
    if (!parsed.ok()) {
      return parsed.status();
    }
    expected = *parsed;
  }
  if (args.expected_size < 0) {
    return UsageError("--expected-size must not be negative");
  }
  absl::StatusOr<content::Labels> labels = ParseLabels(args.labels);
  if (!labels.ok()) {
    return labels.status();
  }
  std::string input_name = args.file.empty() ? "stdin" : args.file;
  int fd = 0;
  if (!args.file.empty()) {
    fd = ::open(args.file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      std::string message = ErrnoText(absl::StrCat("open ", args.file), err);
      return err == ENOENT ? absl::NotFoundError(message) : absl::PermissionDeniedError(message);
    }
  }
  absl::Cleanup close_input = [fd] {
    if (fd != 0) {
      ::close(fd);
    }
  };

  const Context ctx = session.context();
  content::GrpcContentStore store(session.Channel(kDaemon));
  FdSource input(fd, input_name);
  oci::Descriptor desc;
  desc.digest = expected;
  desc.size = args.expected_size;
  content::CopyOptions options;
  options.labels = *labels;
  options.source_name = input_name;
  options.size_name = "--expected-size";
  options.on_resume = [&](int64_t offset) {
    std::cerr << "resuming ingest " << args.ref << " at offset " << offset << '\n';
  };
  absl::StatusOr<content::CopyResult> copied = content::Copy(ctx, store, args.ref, input, desc,
                                                             options);
  if (!copied.ok()) {
    // An ingest that is still there can be resumed or dropped: say how.
    if (store.GetStatus(ctx, args.ref).ok()) {
      return session.Explain(
          kDaemon, absl::Status(copied.status().code(),
                                absl::StrCat(copied.status().message(),
                                             ": run the same command again to resume, or "
                                             "`berth content abort ",
                                             args.ref, "` to start over")));
    }
    return session.Explain(kDaemon, copied.status());
  }
  return PrintIngested(session, copied->digest, copied->size, args.ref);
}

absl::Status List(Session& session, const std::vector<std::string>& filters, bool quiet) {
  content::GrpcContentStore store(session.Channel(kDaemon));
  std::vector<content::Info> infos;
  absl::Status status = store.Walk(session.context(), filters, [&](const content::Info& info) {
    infos.push_back(info);
    return absl::OkStatus();
  });
  if (!status.ok()) {
    return session.Explain(kDaemon, status);
  }
  if (session.json()) {
    nlohmann::json out = nlohmann::json::array();
    for (const content::Info& info : infos) {
      out.push_back(InfoJson(info));
    }
    PrintJson(std::cout, out);
  } else if (quiet) {
    for (const content::Info& info : infos) {
      std::cout << info.digest.ToString() << '\n';
    }
  } else {
    absl::Time now = absl::Now();
    Table table({"DIGEST", "SIZE", "AGE", "LABELS"});
    for (const content::Info& info : infos) {
      table.AddRow({info.digest.ToString(), HumanSize(info.size),
                    HumanDuration(now - info.created_at), FormatLabels(info.labels)});
    }
    table.Print(std::cout);
  }
  return absl::OkStatus();
}

absl::Status Get(Session& session, const std::string& digest_arg) {
  absl::StatusOr<Digest> digest = ParseDigestArg(digest_arg);
  if (!digest.ok()) {
    return digest.status();
  }
  content::GrpcContentStore store(session.Channel(kDaemon));
  absl::StatusOr<std::unique_ptr<content::Reader>> reader =
      store.OpenReader(session.context(), *digest);
  if (!reader.ok()) {
    return session.Explain(kDaemon, reader.status());
  }
  std::vector<char> buf(kChunk);
  int64_t offset = 0;
  while (offset < (*reader)->Size()) {
    absl::StatusOr<size_t> n = (*reader)->ReadAt(offset, buf.data(), buf.size());
    if (!n.ok()) {
      return session.Explain(kDaemon, n.status());
    }
    if (*n == 0) {
      return absl::DataLossError(absl::StrCat("content ", digest->ToString(), ": ended at ", offset,
                                              " of ", (*reader)->Size(), " bytes"));
    }
    if (absl::Status status = WriteFull(1, absl::string_view(buf.data(), *n), "stdout"); !status.ok()) {
      return status;
    }
    offset += static_cast<int64_t>(*n);
  }
  return absl::OkStatus();
}

void PrintInfo(Session& session, const content::Info& info) {
  if (session.json()) {
    PrintJson(std::cout, InfoJson(info));
    return;
  }
  absl::Time now = absl::Now();
  std::cout << "Digest:   " << info.digest.ToString() << '\n'
            << "Size:     " << info.size << " (" << HumanSize(info.size) << ")\n"
            << "Created:  " << FormatTimestamp(info.created_at) << " ("
            << HumanDuration(now - info.created_at) << " ago)\n"
            << "Updated:  " << FormatTimestamp(info.updated_at) << " ("
            << HumanDuration(now - info.updated_at) << " ago)\n"
            << "Labels:" << (info.labels.empty() ? "   -\n" : "\n");
  for (const auto& [key, value] : info.labels) {
    std::cout << "  " << key << "=" << value << '\n';
  }
}

absl::Status ShowInfo(Session& session, const std::string& digest_arg) {
  absl::StatusOr<Digest> digest = ParseDigestArg(digest_arg);
  if (!digest.ok()) {
    return digest.status();
  }
  content::GrpcContentStore store(session.Channel(kDaemon));
  absl::StatusOr<content::Info> info = store.GetInfo(session.context(), *digest);
  if (!info.ok()) {
    return session.Explain(kDaemon, info.status());
  }
  PrintInfo(session, *info);
  return absl::OkStatus();
}

// Removes every digest it can; reports each failure and fails if any did.
absl::Status Remove(Session& session, const std::vector<std::string>& digest_args) {
  std::vector<Digest> digests;
  for (const std::string& arg : digest_args) {
    absl::StatusOr<Digest> digest = ParseDigestArg(arg);
    if (!digest.ok()) {
      return digest.status();
    }
    digests.push_back(*digest);
  }
  content::GrpcContentStore store(session.Channel(kDaemon));
  std::vector<std::string> names;
  for (const Digest& digest : digests) {
    names.push_back(digest.ToString());
  }
  return RemoveEach(session, kDaemon, names, [&](const std::string& name) {
    return store.Delete(session.context(), *Digest::Parse(name));
  });
}

// `label DIGEST k=v k2=`: sets k, removes k2, leaves other labels alone (like ctr).
absl::Status Label(Session& session, const std::string& digest_arg,
                   const std::vector<std::string>& label_args) {
  absl::StatusOr<Digest> digest = ParseDigestArg(digest_arg);
  if (!digest.ok()) {
    return digest.status();
  }
  content::Info info;
  info.digest = *digest;
  std::vector<std::string> paths;
  for (const std::string& arg : label_args) {
    absl::StatusOr<std::pair<std::string, std::string>> label = ParseLabel(arg);
    if (!label.ok()) {
      return label.status();
    }
    if (label->second.empty()) {
      info.labels.erase(label->first);  // absent from info + named in the mask: removed
    } else {
      info.labels[label->first] = label->second;
    }
    paths.push_back(absl::StrCat("labels.", label->first));
  }
  content::GrpcContentStore store(session.Channel(kDaemon));
  absl::StatusOr<content::Info> updated = store.Update(session.context(), info, paths);
  if (!updated.ok()) {
    return session.Explain(kDaemon, updated.status());
  }
  if (session.json()) {
    PrintJson(std::cout, InfoJson(*updated));
  } else {
    std::cout << updated->digest.ToString() << "  " << FormatLabels(updated->labels) << '\n';
  }
  return absl::OkStatus();
}

absl::Status Active(Session& session, const std::vector<std::string>& filters) {
  content::GrpcContentStore store(session.Channel(kDaemon));
  absl::StatusOr<std::vector<content::IngestStatus>> statuses =
      store.ListStatuses(session.context(), filters);
  if (!statuses.ok()) {
    return session.Explain(kDaemon, statuses.status());
  }
  if (session.json()) {
    nlohmann::json out = nlohmann::json::array();
    for (const content::IngestStatus& status : *statuses) {
      out.push_back(StatusJson(status));
    }
    PrintJson(std::cout, out);
    return absl::OkStatus();
  }
  absl::Time now = absl::Now();
  Table table({"REF", "OFFSET", "TOTAL", "EXPECTED", "AGE"});
  for (const content::IngestStatus& status : *statuses) {
    table.AddRow({status.ref, std::to_string(status.offset),
                  status.total > 0 ? std::to_string(status.total) : "-",
                  status.expected.IsEmpty() ? "-" : status.expected.ToString(),
                  HumanDuration(now - status.started_at)});
  }
  table.Print(std::cout);
  return absl::OkStatus();
}

absl::Status Abort(Session& session, const std::string& ref) {
  content::GrpcContentStore store(session.Channel(kDaemon));
  if (absl::Status status = store.Abort(session.context(), ref); !status.ok()) {
    return session.Explain(kDaemon, status);
  }
  if (session.json()) {
    PrintJson(std::cout, {{"aborted", ref}});
  } else {
    std::cout << ref << '\n';
  }
  return absl::OkStatus();
}

}  // namespace

void RegisterContentCommands(CLI::App& root, Runner& runner) {
  CLI::App* content = root.add_subcommand("content", "Manage blobs in contentd");
  content->require_subcommand(0, 1);

  auto ingest_args = std::make_shared<IngestArgs>();
  CLI::App* ingest = content->add_subcommand(
      "ingest",
      "Store stdin (or --file) as a blob and print its digest. An interrupted ingest resumes "
      "when run again with the same REF and the same input");
  ingest->add_option("REF", ingest_args->ref, "Name of the ingest (any string you choose)")
      ->required();
  ingest->add_option("--expected-digest", ingest_args->expected_digest,
                     "Refuse to commit unless the input has this digest");
  ingest->add_option("--expected-size", ingest_args->expected_size,
                     "Refuse to commit unless the input has this many bytes; a shorter input "
                     "keeps the ingest for a resume");
  ingest->add_option("--label", ingest_args->labels, "Label for the blob, key=value (repeatable)")
      ->allow_extra_args(false);
  ingest->add_option("-f,--file", ingest_args->file, "Read this file instead of stdin");
  ingest->callback(
      runner.Wrap([ingest_args](Session& session) { return Ingest(session, *ingest_args); }));

  struct ListArgs {
    std::vector<std::string> filters;
    bool quiet = false;
  };
  auto ls_args = std::make_shared<ListArgs>();
  CLI::App* ls = content->add_subcommand("ls", "List blobs (table: DIGEST SIZE AGE LABELS)");
  ls->alias("list");
  ls->add_option("FILTER", ls_args->filters,
                 "containerd filters over digest, size and labels.<key>; any may match");
  ls->add_flag("-q,--quiet", ls_args->quiet, "Print only the digests");
  ls->callback(runner.Wrap(
      [ls_args](Session& session) { return List(session, ls_args->filters, ls_args->quiet); }));

  auto get_digest = std::make_shared<std::string>();
  CLI::App* get = content->add_subcommand("get", "Write a blob to stdout");
  get->add_option("DIGEST", *get_digest, "Digest of the blob")->required();
  get->callback(runner.Wrap([get_digest](Session& session) { return Get(session, *get_digest); }));

  auto info_digest = std::make_shared<std::string>();
  CLI::App* info = content->add_subcommand("info", "Show a blob's size, times and labels");
  info->add_option("DIGEST", *info_digest, "Digest of the blob")->required();
  info->callback(
      runner.Wrap([info_digest](Session& session) { return ShowInfo(session, *info_digest); }));

  auto rm_digests = std::make_shared<std::vector<std::string>>();
  CLI::App* rm = content->add_subcommand("rm", "Remove blobs from the namespace");
  rm->alias("remove");
  rm->add_option("DIGEST", *rm_digests, "Digests of the blobs")->required();
  rm->callback(
      runner.Wrap([rm_digests](Session& session) { return Remove(session, *rm_digests); }));

  struct LabelArgs {
    std::string digest;
    std::vector<std::string> labels;
  };
  auto label_args = std::make_shared<LabelArgs>();
  CLI::App* label = content->add_subcommand(
      "label", "Set labels on a blob (key=value) or remove them (key=); others are kept");
  label->add_option("DIGEST", label_args->digest, "Digest of the blob")->required();
  label->add_option("LABELS", label_args->labels, "key=value to set, key= to remove")->required();
  label->callback(runner.Wrap([label_args](Session& session) {
    return Label(session, label_args->digest, label_args->labels);
  }));

  auto active_filters = std::make_shared<std::vector<std::string>>();
  CLI::App* active = content->add_subcommand(
      "active", "List ingests in progress (table: REF OFFSET TOTAL EXPECTED AGE)");
  active->add_option("FILTER", *active_filters, "containerd filters over ref, e.g. ref~=^layer");
  active->callback(
      runner.Wrap([active_filters](Session& session) { return Active(session, *active_filters); }));

  auto abort_ref = std::make_shared<std::string>();
  CLI::App* abort = content->add_subcommand("abort", "Abort an ingest and drop its data");
  abort->add_option("REF", *abort_ref, "Name of the ingest")->required();
  abort->callback(
      runner.Wrap([abort_ref](Session& session) { return Abort(session, *abort_ref); }));
}

}  // namespace berth::cli
