// `berth lease create|ls|rm`, on leases::GrpcLeaseManager talking to contentd.

#include <cstdint>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/strings/str_format.h"
#include "lib/base/identifiers.h"
#include "lib/base/random.h"
#include "lib/leases/grpc_lease_manager.h"
#include "tools/berth/commands.h"
#include "tools/berth/output.h"

namespace berth::cli {
namespace {

constexpr absl::string_view kDaemon = "contentd";
// containerd's label for a lease's expiry, RFC 3339.
constexpr char kExpireLabel[] = "containerd.io/gc.expire";

nlohmann::json LeaseJson(const leases::Lease& lease) {
  return {{"id", lease.id},
          {"created_at", FormatTimestamp(lease.created_at)},
          {"labels", lease.labels}};
}

// A fresh lease id the way containerd's clients make one (the server does not): time plus
// randomness, valid as an identifier.
std::string RandomLeaseId() {
  return absl::StrFormat("berth-%d-%s", absl::ToUnixNanos(absl::Now()), RandomHex(4));
}

struct CreateArgs {
  std::string id;
  std::string expire = "24h";
  std::vector<std::string> labels;
};

absl::Status Create(Session& session, const CreateArgs& args) {
  std::string id = args.id.empty() ? RandomLeaseId() : args.id;
  if (absl::Status status = ValidateIdentifier("lease id", id); !status.ok()) {
    return UsageError(status.message());
  }
  absl::StatusOr<absl::Duration> expire = ParseDurationArg("--expire", args.expire);
  if (!expire.ok()) {
    return expire.status();
  }
  absl::StatusOr<std::map<std::string, std::string>> labels = ParseLabels(args.labels);
  if (!labels.ok()) {
    return labels.status();
  }
  if (*expire > absl::ZeroDuration()) {
    (*labels)[kExpireLabel] = FormatTimestamp(absl::Now() + *expire);
  }
  leases::GrpcLeaseManager manager(session.Channel(kDaemon));
  absl::StatusOr<leases::Lease> lease = manager.Create(session.context(), id, *labels);
  if (!lease.ok()) {
    return session.Explain(kDaemon, lease.status());
  }
  if (session.json()) {
    PrintJson(std::cout, LeaseJson(*lease));
  } else {
    std::cout << lease->id << '\n';
  }
  return absl::OkStatus();
}

absl::Status List(Session& session, const std::vector<std::string>& filters, bool quiet) {
  leases::GrpcLeaseManager manager(session.Channel(kDaemon));
  absl::StatusOr<std::vector<leases::Lease>> leases = manager.List(session.context(), filters);
  if (!leases.ok()) {
    return session.Explain(kDaemon, leases.status());
  }
  if (session.json()) {
    nlohmann::json out = nlohmann::json::array();
    for (const leases::Lease& lease : *leases) {
      out.push_back(LeaseJson(lease));
    }
    PrintJson(std::cout, out);
  } else if (quiet) {
    for (const leases::Lease& lease : *leases) {
      std::cout << lease.id << '\n';
    }
  } else {
    Table table({"ID", "CREATED AT", "LABELS"});
    for (const leases::Lease& lease : *leases) {
      table.AddRow({lease.id, FormatTimestamp(lease.created_at), FormatLabels(lease.labels)});
    }
    table.Print(std::cout);
  }
  return absl::OkStatus();
}

// Removes every lease it can; reports each failure and fails if any did.
absl::Status Remove(Session& session, const std::vector<std::string>& ids, bool sync) {
  leases::GrpcLeaseManager manager(session.Channel(kDaemon));
  return RemoveEach(session, kDaemon, ids, [&](const std::string& id) {
    return manager.Delete(session.context(), id, sync);
  });
}

}  // namespace

void RegisterLeaseCommands(CLI::App& root, Runner& runner) {
  CLI::App* lease = root.add_subcommand("lease", "Manage leases (served by contentd)");
  lease->alias("leases");
  lease->require_subcommand(0, 1);

  auto create_args = std::make_shared<CreateArgs>();
  CLI::App* create = lease->add_subcommand("create", "Create a lease and print its id");
  create->add_option("--id", create_args->id, "Lease id (default: a random one)");
  create
      ->add_option("-x,--expire", create_args->expire,
                   "Expire after this long (sets containerd.io/gc.expire; 0: never)")
      ->capture_default_str();
  create->add_option("--label", create_args->labels, "Label, key=value (repeatable)")
      ->allow_extra_args(false);
  create->callback(
      runner.Wrap([create_args](Session& session) { return Create(session, *create_args); }));

  struct ListArgs {
    std::vector<std::string> filters;
    bool quiet = false;
  };
  auto ls_args = std::make_shared<ListArgs>();
  CLI::App* ls = lease->add_subcommand("ls", "List leases (table: ID CREATED AT LABELS)");
  ls->alias("list");
  ls->add_option("FILTER", ls_args->filters, "containerd filters over id and labels.<key>");
  ls->add_flag("-q,--quiet", ls_args->quiet, "Print only the ids");
  ls->callback(runner.Wrap(
      [ls_args](Session& session) { return List(session, ls_args->filters, ls_args->quiet); }));

  struct RemoveArgs {
    std::vector<std::string> ids;
    bool sync = false;
  };
  auto rm_args = std::make_shared<RemoveArgs>();
  CLI::App* rm = lease->add_subcommand("rm", "Remove leases");
  rm->alias("remove");
  rm->add_option("ID", rm_args->ids, "Lease ids")->required();
  rm->add_flag("--sync", rm_args->sync, "Collect what the lease held before returning");
  rm->callback(runner.Wrap(
      [rm_args](Session& session) { return Remove(session, rm_args->ids, rm_args->sync); }));
}

}  // namespace berth::cli
