// `berth images ls|rm|tag|inspect`, on images::GrpcImageStore talking to imaged. Records only:
// nothing here reads the images' content, so SIZE is the target descriptor's size (an index's or
// a manifest's), not the image's total as `ctr images ls` adds it up from contentd.

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "lib/images/grpc_image_store.h"
#include "tools/berth/commands.h"
#include "tools/berth/output.h"

namespace berth::cli {
namespace {

constexpr absl::string_view kDaemon = "imaged";

nlohmann::json ImageJson(const images::Image& image) {
  return {{"name", image.name},
          {"labels", image.labels},
          {"target",
           {{"media_type", image.target.media_type},
            {"digest", image.target.digest.ToString()},
            {"size", image.target.size},
            {"annotations", image.target.annotations}}},
          {"created_at", FormatTimestamp(image.created_at)},
          {"updated_at", FormatTimestamp(image.updated_at)}};
}

absl::Status List(Session& session, const std::vector<std::string>& filters, bool quiet) {
  images::GrpcImageStore store(session.Channel(kDaemon));
  absl::StatusOr<std::vector<images::Image>> list = store.List(session.context(), filters);
  if (!list.ok()) {
    return session.Explain(kDaemon, list.status());
  }
  if (session.json()) {
    nlohmann::json out = nlohmann::json::array();
    for (const images::Image& image : *list) {
      out.push_back(ImageJson(image));
    }
    PrintJson(std::cout, out);
  } else if (quiet) {
    for (const images::Image& image : *list) {
      std::cout << image.name << '\n';
    }
  } else {
    Table table({"NAME", "DIGEST", "SIZE", "MEDIA TYPE", "LABELS"});
    for (const images::Image& image : *list) {
      table.AddRow({image.name, image.target.digest.ToString(), HumanSize(image.target.size),
                    image.target.media_type, FormatLabels(image.labels)});
    }
    table.Print(std::cout);
  }
  return absl::OkStatus();
}

absl::Status Remove(Session& session, const std::vector<std::string>& names, bool sync) {
  images::GrpcImageStore store(session.Channel(kDaemon));
  return RemoveEach(session, kDaemon, names, [&](const std::string& name) {
    return store.Delete(session.context(), name, sync);
  });
}

struct TagArgs {
  std::string source;
  std::vector<std::string> targets;
  bool force = false;
};

// Each target gets a record with SOURCE's target and labels, as ctr's tag makes it. With
// --force an existing record is replaced in one Update (no moment without the name), keeping
// its creation time. Stops at the first failure; the names tagged before it are printed.
absl::Status Tag(Session& session, const TagArgs& args) {
  images::GrpcImageStore store(session.Channel(kDaemon));
  absl::StatusOr<images::Image> source = store.Get(session.context(), args.source);
  if (!source.ok()) {
    return session.Explain(kDaemon, source.status());
  }
  std::vector<std::string> tagged;
  absl::Status status;
  for (const std::string& target : args.targets) {
    images::Image image;
    image.name = target;
    image.labels = source->labels;
    image.target = source->target;
    absl::StatusOr<images::Image> created = store.Create(session.context(), image);
    if (created.status().code() == absl::StatusCode::kAlreadyExists && args.force) {
      created = store.Update(session.context(), image, {});
    }
    if (!created.ok()) {
      status = session.Explain(kDaemon, created.status());
      break;
    }
    tagged.push_back(target);
  }
  PrintNames(session, tagged);
  return status;
}

// The record as JSON, with or without --json: there is no table for one record.
absl::Status Inspect(Session& session, const std::string& name) {
  images::GrpcImageStore store(session.Channel(kDaemon));
  absl::StatusOr<images::Image> image = store.Get(session.context(), name);
  if (!image.ok()) {
    return session.Explain(kDaemon, image.status());
  }
  PrintJson(std::cout, ImageJson(*image));
  return absl::OkStatus();
}

}  // namespace

void RegisterImageCommands(CLI::App& root, Runner& runner) {
  CLI::App* group = root.add_subcommand("images", "Manage image records (served by imaged)");
  group->alias("image");
  group->require_subcommand(0, 1);

  struct ListArgs {
    std::vector<std::string> filters;
    bool quiet = false;
  };
  auto ls_args = std::make_shared<ListArgs>();
  CLI::App* ls = group->add_subcommand(
      "ls", "List image records (table: NAME DIGEST SIZE MEDIA TYPE LABELS; SIZE is the "
            "target's)");
  ls->alias("list");
  ls->add_option("FILTER", ls_args->filters,
                 "containerd filters over name, target.digest, target.mediatype, labels.<key>, "
                 "annotations.<key>; any may match");
  ls->add_flag("-q,--quiet", ls_args->quiet, "Print only the names");
  ls->callback(runner.Wrap(
      [ls_args](Session& session) { return List(session, ls_args->filters, ls_args->quiet); }));

  struct RemoveArgs {
    std::vector<std::string> names;
    bool sync = true;
  };
  auto rm_args = std::make_shared<RemoveArgs>();
  CLI::App* rm = group->add_subcommand("rm", "Remove image records");
  rm->alias("remove");
  rm->add_option("NAME", rm_args->names, "Image names")->required();
  rm->add_flag("--sync,!--no-sync", rm_args->sync,
               "Return once what the records alone kept alive is collected (the default; "
               "--no-sync: collect in the background)");
  rm->callback(runner.Wrap(
      [rm_args](Session& session) { return Remove(session, rm_args->names, rm_args->sync); }));

  auto tag_args = std::make_shared<TagArgs>();
  CLI::App* tag = group->add_subcommand(
      "tag", "Name SOURCE's target under each TARGET, printing the names made");
  tag->add_option("SOURCE", tag_args->source, "Existing image name")->required();
  tag->add_option("TARGET", tag_args->targets, "New image names")->required();
  tag->add_flag("-f,--force", tag_args->force, "Replace a TARGET record that exists");
  tag->callback(runner.Wrap([tag_args](Session& session) { return Tag(session, *tag_args); }));

  auto inspect_name = std::make_shared<std::string>();
  CLI::App* inspect =
      group->add_subcommand("inspect", "Print an image record as JSON (target, labels, times)");
  inspect->add_option("NAME", *inspect_name, "Image name")->required();
  inspect->callback(runner.Wrap(
      [inspect_name](Session& session) { return Inspect(session, *inspect_name); }));
}

}  // namespace berth::cli
