// `berth snapshot prepare|view|mounts|commit|rm|gc|ls|usage|tree|apply|unpack`, on
// snapshots::GrpcSnapshotter (diff::GrpcDiff for apply, snapshots::GrpcUnpacker for unpack)
// talking to snapshotd. Modeled on
// `ctr snapshots`: the same arguments in the same order and the same table columns.

#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "lib/content/grpc_content_store.h"
#include "lib/diff/grpc_diff.h"
#include "lib/snapshots/collector.h"
#include "lib/snapshots/grpc_snapshotter.h"
#include "lib/snapshots/grpc_unpacker.h"
#include "tools/berth/commands.h"
#include "tools/berth/output.h"

namespace berth::cli {
namespace {

constexpr absl::string_view kDaemon = "snapshotd";

const char* KindName(snapshots::Kind kind) {
  switch (kind) {
    case snapshots::Kind::kView:
      return "View";
    case snapshots::Kind::kActive:
      return "Active";
    case snapshots::Kind::kCommitted:
      return "Committed";
    case snapshots::Kind::kUnknown:
      break;
  }
  return "Unknown";
}

nlohmann::json InfoJson(const snapshots::Info& info) {
  return {{"name", info.name},
          {"parent", info.parent},
          {"kind", KindName(info.kind)},
          {"created_at", FormatTimestamp(info.created_at)},
          {"updated_at", FormatTimestamp(info.updated_at)},
          {"labels", info.labels}};
}

nlohmann::json MountsJson(const std::vector<mount::Mount>& mounts) {
  nlohmann::json out = nlohmann::json::array();
  for (const mount::Mount& m : mounts) {
    out.push_back({{"type", m.type},
                   {"source", m.source},
                   {"target", m.target},
                   {"options", m.options}});
  }
  return out;
}

// The mounts as mount(8) commands onto `target` (as `ctr snapshots mounts` prints them), or
// as JSON.
void PrintMounts(Session& session, const std::vector<mount::Mount>& mounts,
                 const std::string& target) {
  if (session.json()) {
    PrintJson(std::cout, MountsJson(mounts));
    return;
  }
  for (const mount::Mount& m : mounts) {
    std::cout << "mount -t " << m.type << ' ' << m.source << ' ' << target;
    if (!m.options.empty()) {
      std::cout << " -o " << absl::StrJoin(m.options, ",");
    }
    std::cout << '\n';
  }
}

// Options every snapshot command shares.
struct SnapshotOptions {
  std::string snapshotter = "overlayfs";
};

struct PrepareArgs {
  std::string key;
  std::string parent;
  std::string target;
  std::vector<std::string> labels;
};

// Prepare (view == false) or View.
absl::Status PrepareOrView(Session& session, const SnapshotOptions& opts,
                           const PrepareArgs& args, bool view) {
  absl::StatusOr<std::map<std::string, std::string>> labels = ParseLabels(args.labels);
  if (!labels.ok()) {
    return labels.status();
  }
  snapshots::GrpcSnapshotter snapshotter(session.Channel(kDaemon), opts.snapshotter);
  absl::StatusOr<std::vector<mount::Mount>> mounts =
      view ? snapshotter.View(session.context(), args.key, args.parent, *labels)
           : snapshotter.Prepare(session.context(), args.key, args.parent, *labels);
  if (!mounts.ok()) {
    return session.Explain(kDaemon, mounts.status());
  }
  if (!args.target.empty() || session.json()) {
    PrintMounts(session, *mounts, args.target);
  }
  return absl::OkStatus();
}

absl::Status Mounts(Session& session, const SnapshotOptions& opts, const std::string& target,
                    const std::string& key) {
  snapshots::GrpcSnapshotter snapshotter(session.Channel(kDaemon), opts.snapshotter);
  absl::StatusOr<std::vector<mount::Mount>> mounts = snapshotter.Mounts(session.context(), key);
  if (!mounts.ok()) {
    return session.Explain(kDaemon, mounts.status());
  }
  PrintMounts(session, *mounts, target);
  return absl::OkStatus();
}

struct CommitArgs {
  std::string name;
  std::string key;
  std::vector<std::string> labels;
};

absl::Status Commit(Session& session, const SnapshotOptions& opts, const CommitArgs& args) {
  absl::StatusOr<std::map<std::string, std::string>> labels = ParseLabels(args.labels);
  if (!labels.ok()) {
    return labels.status();
  }
  snapshots::GrpcSnapshotter snapshotter(session.Channel(kDaemon), opts.snapshotter);
  return session.Explain(
      kDaemon, snapshotter.Commit(session.context(), args.name, args.key, *labels));
}

// Removes every snapshot it can; reports each failure and fails if any did.
absl::Status Remove(Session& session, const SnapshotOptions& opts,
                    const std::vector<std::string>& keys) {
  snapshots::GrpcSnapshotter snapshotter(session.Channel(kDaemon), opts.snapshotter);
  return RemoveEach(session, kDaemon, keys, [&](const std::string& key) {
    return snapshotter.Remove(session.context(), key);
  });
}

// Every snapshot matching `filters`, in the order the server walks them.
absl::StatusOr<std::vector<snapshots::Info>> Collect(Session& session,
                                                     snapshots::Snapshotter& snapshotter,
                                                     const std::vector<std::string>& filters) {
  std::vector<snapshots::Info> infos;
  absl::Status status =
      snapshotter.Walk(session.context(), filters, [&](const snapshots::Info& info) {
        infos.push_back(info);
        return absl::OkStatus();
      });
  if (!status.ok()) {
    return session.Explain(kDaemon, status);
  }
  return infos;
}

absl::Status List(Session& session, const SnapshotOptions& opts,
                  const std::vector<std::string>& filters, bool quiet) {
  snapshots::GrpcSnapshotter snapshotter(session.Channel(kDaemon), opts.snapshotter);
  absl::StatusOr<std::vector<snapshots::Info>> infos = Collect(session, snapshotter, filters);
  if (!infos.ok()) {
    return infos.status();
  }
  if (session.json()) {
    nlohmann::json out = nlohmann::json::array();
    for (const snapshots::Info& info : *infos) {
      out.push_back(InfoJson(info));
    }
    PrintJson(std::cout, out);
  } else if (quiet) {
    for (const snapshots::Info& info : *infos) {
      std::cout << info.name << '\n';
    }
  } else {
    Table table({"KEY", "PARENT", "KIND"});
    for (const snapshots::Info& info : *infos) {
      table.AddRow({info.name, info.parent, KindName(info.kind)});
    }
    table.Print(std::cout);
  }
  return absl::OkStatus();
}

// The usage of `keys`, or of every snapshot when none are given.
absl::Status ShowUsage(Session& session, const SnapshotOptions& opts,
                       const std::vector<std::string>& keys, bool bytes) {
  snapshots::GrpcSnapshotter snapshotter(session.Channel(kDaemon), opts.snapshotter);
  std::vector<std::string> names = keys;
  if (names.empty()) {
    absl::StatusOr<std::vector<snapshots::Info>> infos = Collect(session, snapshotter, {});
    if (!infos.ok()) {
      return infos.status();
    }
    for (const snapshots::Info& info : *infos) {
      names.push_back(info.name);
    }
  }
  nlohmann::json out = nlohmann::json::array();
  Table table({"KEY", "SIZE", "INODES"});
  for (const std::string& name : names) {
    absl::StatusOr<snapshots::Usage> usage = snapshotter.GetUsage(session.context(), name);
    if (!usage.ok()) {
      return session.Explain(kDaemon, usage.status());
    }
    out.push_back({{"key", name}, {"size", usage->size}, {"inodes", usage->inodes}});
    table.AddRow({name, bytes ? absl::StrCat(usage->size) : HumanSize(usage->size),
                  absl::StrCat(usage->inodes)});
  }
  if (session.json()) {
    PrintJson(std::cout, out);
  } else {
    table.Print(std::cout);
  }
  return absl::OkStatus();
}

// Prints `name` and, indented below it, its children (as `ctr snapshots tree` does).
void PrintTree(const std::string& name,
               const std::map<std::string, std::vector<std::string>>& children, int depth) {
  if (depth == 0) {
    std::cout << name << '\n';
  } else {
    std::cout << std::string(static_cast<size_t>(depth - 1) * 3 + 1, ' ') << "\\_ " << name
              << '\n';
  }
  auto it = children.find(name);
  if (it == children.end()) {
    return;
  }
  for (const std::string& child : it->second) {
    PrintTree(child, children, depth + 1);
  }
}

nlohmann::json TreeJson(const std::string& name,
                        const std::map<std::string, std::vector<std::string>>& children) {
  nlohmann::json node = {{"name", name}, {"children", nlohmann::json::array()}};
  auto it = children.find(name);
  if (it != children.end()) {
    for (const std::string& child : it->second) {
      node["children"].push_back(TreeJson(child, children));
    }
  }
  return node;
}

absl::Status Tree(Session& session, const SnapshotOptions& opts) {
  snapshots::GrpcSnapshotter snapshotter(session.Channel(kDaemon), opts.snapshotter);
  absl::StatusOr<std::vector<snapshots::Info>> infos = Collect(session, snapshotter, {});
  if (!infos.ok()) {
    return infos.status();
  }
  std::map<std::string, bool> known;
  for (const snapshots::Info& info : *infos) {
    known[info.name] = true;
  }
  // Roots: no parent, or a parent this listing does not have (another namespace's view of it).
  std::vector<std::string> roots;
  std::map<std::string, std::vector<std::string>> children;
  for (const snapshots::Info& info : *infos) {
    if (info.parent.empty() || known.count(info.parent) == 0) {
      roots.push_back(info.name);
    } else {
      children[info.parent].push_back(info.name);
    }
  }
  if (session.json()) {
    nlohmann::json out = nlohmann::json::array();
    for (const std::string& root : roots) {
      out.push_back(TreeJson(root, children));
    }
    PrintJson(std::cout, out);
    return absl::OkStatus();
  }
  for (const std::string& root : roots) {
    PrintTree(root, children, 0);
  }
  return absl::OkStatus();
}

struct ApplyArgs {
  std::string key;
  std::string digest;
  std::string parent;
  std::string commit;
  std::string media_type = "application/vnd.oci.image.layer.v1.tar+gzip";
};

// Prepares KEY on PARENT, applies the layer (a blob in contentd) with snapshotd's Diff service
// and, with --commit, commits it. On a failed apply the prepared snapshot is removed again.
// Prints the applied (uncompressed) digest.
absl::Status ApplyLayer(Session& session, const SnapshotOptions& opts, const ApplyArgs& args) {
  absl::StatusOr<Digest> digest = ParseDigestArg(args.digest);
  if (!digest.ok()) {
    return digest.status();
  }
  content::GrpcContentStore store(session.Channel("contentd"));
  absl::StatusOr<content::Info> blob = store.GetInfo(session.context(), *digest);
  if (!blob.ok()) {
    return session.Explain("contentd", blob.status());
  }
  snapshots::GrpcSnapshotter snapshotter(session.Channel(kDaemon), opts.snapshotter);
  absl::StatusOr<std::vector<mount::Mount>> mounts =
      snapshotter.Prepare(session.context(), args.key, args.parent, {});
  if (!mounts.ok()) {
    return session.Explain(kDaemon, mounts.status());
  }
  oci::Descriptor desc;
  desc.media_type = args.media_type;
  desc.digest = *digest;
  desc.size = blob->size;
  diff::GrpcDiff differ(session.Channel(kDaemon));
  absl::StatusOr<oci::Descriptor> applied = differ.Apply(session.context(), desc, *mounts);
  if (!applied.ok()) {
    if (absl::Status st = snapshotter.Remove(session.context(), args.key); !st.ok()) {
      std::cerr << "berth: removing " << args.key << " after the failed apply: " << st.message()
                << '\n';
    }
    return session.Explain(kDaemon, applied.status());
  }
  if (!args.commit.empty()) {
    if (absl::Status st = snapshotter.Commit(session.context(), args.commit, args.key, {});
        !st.ok()) {
      return session.Explain(kDaemon, st);
    }
  }
  if (session.json()) {
    PrintJson(std::cout, {{"media_type", applied->media_type},
                          {"digest", applied->digest.ToString()},
                          {"size", applied->size}});
  } else {
    std::cout << applied->digest.ToString() << '\n';
  }
  return absl::OkStatus();
}

struct UnpackArgs {
  std::vector<std::string> layers;  // NAME=DIGEST[:MEDIATYPE], bottom first
  std::vector<std::string> labels;
};

// Unpacks a chain with snapshotd's Unpacker (every layer applied at once on overlay): layer i
// is committed as NAME i on NAME i-1; names that exist already are reused. Layer sizes come
// from contentd. Prints each layer's applied (uncompressed) digest, bottom first.
absl::Status Unpack(Session& session, const SnapshotOptions& opts, const UnpackArgs& args) {
  absl::StatusOr<std::map<std::string, std::string>> labels = ParseLabels(args.labels);
  if (!labels.ok()) {
    return labels.status();
  }
  content::GrpcContentStore store(session.Channel("contentd"));
  std::vector<oci::Descriptor> layers;
  std::vector<std::string> chain;
  for (const std::string& arg : args.layers) {
    size_t eq = arg.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer \"", arg, "\": want NAME=DIGEST[:MEDIATYPE]"));
    }
    // DIGEST is algorithm:hex, so a media type starts after the second colon.
    std::string rest = arg.substr(eq + 1);
    size_t colon = rest.find(':');
    size_t second = colon == std::string::npos ? colon : rest.find(':', colon + 1);
    oci::Descriptor desc;
    desc.media_type = "application/vnd.oci.image.layer.v1.tar+gzip";
    if (second != std::string::npos) {
      desc.media_type = rest.substr(second + 1);
      rest.resize(second);
    }
    absl::StatusOr<Digest> digest = ParseDigestArg(rest);
    if (!digest.ok()) {
      return digest.status();
    }
    absl::StatusOr<content::Info> blob = store.GetInfo(session.context(), *digest);
    if (!blob.ok()) {
      return session.Explain("contentd", blob.status());
    }
    desc.digest = *digest;
    desc.size = blob->size;
    layers.push_back(std::move(desc));
    chain.push_back(arg.substr(0, eq));
  }
  snapshots::GrpcUnpacker unpacker(session.Channel(kDaemon), opts.snapshotter);
  absl::StatusOr<std::vector<oci::Descriptor>> applied =
      unpacker.Unpack(session.context(), layers, chain, *labels);
  if (!applied.ok()) {
    return session.Explain(kDaemon, applied.status());
  }
  if (session.json()) {
    nlohmann::json out = nlohmann::json::array();
    for (size_t i = 0; i < applied->size(); ++i) {
      const oci::Descriptor& d = (*applied)[i];
      out.push_back({{"name", chain[i]},
                     {"media_type", d.media_type},
                     {"digest", d.digest.ToString()},
                     {"size", d.size}});
    }
    PrintJson(std::cout, out);
  } else {
    for (const oci::Descriptor& d : *applied) {
      std::cout << (d.digest.IsEmpty() ? "-" : d.digest.ToString()) << '\n';
    }
  }
  return absl::OkStatus();
}

}  // namespace

void RegisterSnapshotCommands(CLI::App& root, Runner& runner) {
  CLI::App* snapshot = root.add_subcommand("snapshot", "Manage snapshots in snapshotd");
  snapshot->alias("snapshots");
  snapshot->require_subcommand(0, 1);
  auto opts = std::make_shared<SnapshotOptions>();
  snapshot
      ->add_option("--snapshotter", opts->snapshotter,
                   "Snapshotter name sent with each request (snapshotd serves one and accepts "
                   "any; containerd picks by it)")
      ->envname("BERTH_SNAPSHOTTER")
      ->capture_default_str();

  auto prepare_args = std::make_shared<PrepareArgs>();
  CLI::App* prepare =
      snapshot->add_subcommand("prepare", "Create an active (writable) snapshot KEY on PARENT");
  prepare->add_option("KEY", prepare_args->key, "Key of the new snapshot")->required();
  prepare->add_option("PARENT", prepare_args->parent, "Committed parent (default: none)");
  prepare->add_option("--target", prepare_args->target,
                      "Print the mount commands for this target directory");
  prepare->add_option("--label", prepare_args->labels, "Label, key=value (repeatable)")
      ->allow_extra_args(false);
  prepare->callback(runner.Wrap([opts, prepare_args](Session& session) {
    return PrepareOrView(session, *opts, *prepare_args, false);
  }));

  auto view_args = std::make_shared<PrepareArgs>();
  CLI::App* view =
      snapshot->add_subcommand("view", "Create a read-only view KEY of committed PARENT");
  view->add_option("KEY", view_args->key, "Key of the new view")->required();
  view->add_option("PARENT", view_args->parent, "Committed parent")->required();
  view->add_option("--target", view_args->target,
                   "Print the mount commands for this target directory");
  view->add_option("--label", view_args->labels, "Label, key=value (repeatable)")
      ->allow_extra_args(false);
  view->callback(runner.Wrap([opts, view_args](Session& session) {
    return PrepareOrView(session, *opts, *view_args, true);
  }));

  struct MountsArgs {
    std::string target;
    std::string key;
  };
  auto mounts_args = std::make_shared<MountsArgs>();
  CLI::App* mounts = snapshot->add_subcommand(
      "mounts", "Print the mount commands of an active snapshot or view onto TARGET");
  mounts->alias("m");
  mounts->add_option("TARGET", mounts_args->target, "Directory to mount onto")->required();
  mounts->add_option("KEY", mounts_args->key, "Key of the snapshot")->required();
  mounts->callback(runner.Wrap([opts, mounts_args](Session& session) {
    return Mounts(session, *opts, mounts_args->target, mounts_args->key);
  }));

  auto commit_args = std::make_shared<CommitArgs>();
  CLI::App* commit =
      snapshot->add_subcommand("commit", "Commit active snapshot KEY as NAME (KEY is gone)");
  commit->add_option("NAME", commit_args->name, "Name of the committed snapshot")->required();
  commit->add_option("KEY", commit_args->key, "Key of the active snapshot")->required();
  commit->add_option("--label", commit_args->labels, "Label, key=value (repeatable)")
      ->allow_extra_args(false);
  commit->callback(runner.Wrap(
      [opts, commit_args](Session& session) { return Commit(session, *opts, *commit_args); }));

  auto rm_keys = std::make_shared<std::vector<std::string>>();
  CLI::App* rm = snapshot->add_subcommand("rm", "Remove snapshots (children first)");
  rm->alias("remove");
  rm->add_option("KEY", *rm_keys, "Keys or names")->required();
  rm->callback(
      runner.Wrap([opts, rm_keys](Session& session) { return Remove(session, *opts, *rm_keys); }));

  CLI::App* gc = snapshot->add_subcommand(
      "gc", "Collect the namespace's snapshots nothing holds, printing the keys removed");
  gc->callback(runner.Wrap([](Session& session) -> absl::Status {
    snapshots::GrpcCollector collector(session.Channel(kDaemon));
    absl::StatusOr<std::vector<std::string>> removed = collector.Collect(session.context());
    if (!removed.ok()) {
      return session.Explain(kDaemon, removed.status());
    }
    PrintNames(session, *removed);
    return absl::OkStatus();
  }));

  struct ListArgs {
    std::vector<std::string> filters;
    bool quiet = false;
  };
  auto ls_args = std::make_shared<ListArgs>();
  CLI::App* ls = snapshot->add_subcommand("ls", "List snapshots (table: KEY PARENT KIND)");
  ls->alias("list");
  ls->add_option("FILTER", ls_args->filters,
                 "containerd filters over name, parent, kind and labels.<key>");
  ls->add_flag("-q,--quiet", ls_args->quiet, "Print only the keys");
  ls->callback(runner.Wrap([opts, ls_args](Session& session) {
    return List(session, *opts, ls_args->filters, ls_args->quiet);
  }));

  struct UsageArgs {
    std::vector<std::string> keys;
    bool bytes = false;
  };
  auto usage_args = std::make_shared<UsageArgs>();
  CLI::App* usage = snapshot->add_subcommand(
      "usage", "Show the disk usage of snapshots' own layers (table: KEY SIZE INODES)");
  usage->add_option("KEY", usage_args->keys, "Keys or names (default: every snapshot)");
  usage->add_flag("-b,--bytes", usage_args->bytes, "Sizes in bytes");
  usage->callback(runner.Wrap([opts, usage_args](Session& session) {
    return ShowUsage(session, *opts, usage_args->keys, usage_args->bytes);
  }));

  auto apply_args = std::make_shared<ApplyArgs>();
  CLI::App* apply = snapshot->add_subcommand(
      "apply", "Prepare KEY, apply a layer blob from contentd onto it (snapshotd's Diff API)");
  apply->add_option("KEY", apply_args->key, "Key of the new active snapshot")->required();
  apply->add_option("DIGEST", apply_args->digest, "Digest of the layer blob in contentd")
      ->required();
  apply->add_option("--parent", apply_args->parent, "Committed parent (default: none)");
  apply->add_option("--commit", apply_args->commit, "Commit the result under this name");
  apply->add_option("--media-type", apply_args->media_type, "The layer's media type")
      ->capture_default_str();
  apply->callback(runner.Wrap(
      [opts, apply_args](Session& session) { return ApplyLayer(session, *opts, *apply_args); }));

  auto unpack_args = std::make_shared<UnpackArgs>();
  CLI::App* unpack = snapshot->add_subcommand(
      "unpack",
      "Unpack a layer chain in one call (layers applied in parallel on overlay): layer i is "
      "committed as NAME i on NAME i-1; existing names are reused");
  unpack
      ->add_option("LAYER", unpack_args->layers,
                   "NAME=DIGEST[:MEDIATYPE], bottom first (media type default: OCI tar+gzip)")
      ->required();
  unpack->add_option("--label", unpack_args->labels,
                     "Label for each committed layer, key=value (repeatable)")
      ->allow_extra_args(false);
  unpack->callback(runner.Wrap(
      [opts, unpack_args](Session& session) { return Unpack(session, *opts, *unpack_args); }));

  CLI::App* tree = snapshot->add_subcommand("tree", "Show snapshots as a tree of parents");
  tree->callback(runner.Wrap([opts](Session& session) { return Tree(session, *opts); }));
}

}  // namespace berth::cli
