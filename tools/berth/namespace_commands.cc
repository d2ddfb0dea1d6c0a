// `berth namespace create|ls|rm`, over containerd.services.namespaces.v1.Namespaces (served by
// contentd, which owns the namespace registry).

#include <algorithm>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "containerd/services/namespaces/v1/namespace.grpc.pb.h"
#include "google/protobuf/empty.pb.h"
#include "lib/base/grpc_status.h"
#include "lib/base/identifiers.h"
#include "tools/berth/commands.h"
#include "tools/berth/output.h"

namespace berth::cli {
namespace {

namespace pb = ::containerd::services::namespaces::v1;

constexpr absl::string_view kDaemon = "contentd";

nlohmann::json NamespaceJson(const pb::Namespace& ns) {
  nlohmann::json labels = nlohmann::json::object();
  for (const auto& [key, value] : ns.labels()) {
    labels[key] = value;
  }
  return {{"name", ns.name()}, {"labels", labels}};
}

std::map<std::string, std::string> SortedLabels(const pb::Namespace& ns) {
  return {ns.labels().begin(), ns.labels().end()};
}

absl::Status Create(Session& session, const std::string& name,
                    const std::vector<std::string>& label_args) {
  if (absl::Status status = ValidateNamespace(name); !status.ok()) {
    return UsageError(status.message());
  }
  absl::StatusOr<std::map<std::string, std::string>> labels = ParseLabels(label_args);
  if (!labels.ok()) {
    return labels.status();
  }
  pb::CreateNamespaceRequest request;
  request.mutable_namespace_()->set_name(name);
  request.mutable_namespace_()->mutable_labels()->insert(labels->begin(), labels->end());
  pb::CreateNamespaceResponse response;
  grpc::ClientContext context;
  session.Prepare(&context);
  auto stub = pb::Namespaces::NewStub(session.Channel(kDaemon));
  absl::Status status = FromGrpcStatus(stub->Create(&context, request, &response));
  if (!status.ok()) {
    return session.Explain(kDaemon, status);
  }
  if (session.json()) {
    PrintJson(std::cout, NamespaceJson(response.namespace_()));
  } else {
    std::cout << response.namespace_().name() << '\n';
  }
  return absl::OkStatus();
}

absl::Status List(Session& session, bool quiet) {
  pb::ListNamespacesRequest request;
  pb::ListNamespacesResponse response;
  grpc::ClientContext context;
  session.Prepare(&context);
  auto stub = pb::Namespaces::NewStub(session.Channel(kDaemon));
  absl::Status status = FromGrpcStatus(stub->List(&context, request, &response));
  if (!status.ok()) {
    return session.Explain(kDaemon, status);
  }
  std::vector<pb::Namespace> namespaces(response.namespaces().begin(), response.namespaces().end());
  std::sort(namespaces.begin(), namespaces.end(),
            [](const pb::Namespace& a, const pb::Namespace& b) { return a.name() < b.name(); });
  if (session.json()) {
    nlohmann::json out = nlohmann::json::array();
    for (const pb::Namespace& ns : namespaces) {
      out.push_back(NamespaceJson(ns));
    }
    PrintJson(std::cout, out);
  } else if (quiet) {
    for (const pb::Namespace& ns : namespaces) {
      std::cout << ns.name() << '\n';
    }
  } else {
    Table table({"NAME", "LABELS"});
    for (const pb::Namespace& ns : namespaces) {
      table.AddRow({ns.name(), FormatLabels(SortedLabels(ns))});
    }
    table.Print(std::cout);
  }
  return absl::OkStatus();
}

// Removes every name it can; reports each failure and fails if any did.
absl::Status Remove(Session& session, const std::vector<std::string>& names) {
  auto stub = pb::Namespaces::NewStub(session.Channel(kDaemon));
  return RemoveEach(session, kDaemon, names, [&](const std::string& name) {
    pb::DeleteNamespaceRequest request;
    request.set_name(name);
    google::protobuf::Empty response;
    grpc::ClientContext context;
    session.Prepare(&context);
    return FromGrpcStatus(stub->Delete(&context, request, &response));
  });
}

}  // namespace

void RegisterNamespaceCommands(CLI::App& root, Runner& runner) {
  CLI::App* ns = root.add_subcommand("namespace", "Manage namespaces (served by contentd)");
  ns->alias("ns");
  ns->require_subcommand(0, 1);

  struct CreateArgs {
    std::string name;
    std::vector<std::string> labels;
  };
  auto create_args = std::make_shared<CreateArgs>();
  CLI::App* create = ns->add_subcommand("create", "Create a namespace");
  create->add_option("NAME", create_args->name, "Namespace name")->required();
  create->add_option("LABELS", create_args->labels, "Labels, key=value");
  create->callback(runner.Wrap([create_args](Session& session) {
    return Create(session, create_args->name, create_args->labels);
  }));

  auto quiet = std::make_shared<bool>(false);
  CLI::App* ls = ns->add_subcommand("ls", "List namespaces");
  ls->alias("list");
  ls->add_flag("-q,--quiet", *quiet, "Print only the names");
  ls->callback(runner.Wrap([quiet](Session& session) { return List(session, *quiet); }));

  auto names = std::make_shared<std::vector<std::string>>();
  CLI::App* rm = ns->add_subcommand("rm", "Remove namespaces (they must be empty)");
  rm->alias("remove");
  rm->add_option("NAME", *names, "Namespace names")->required();
  rm->callback(runner.Wrap([names](Session& session) { return Remove(session, *names); }));
}

}  // namespace berth::cli
