#include "lib/server/builtin_services.h"

#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "lib/base/grpc_status.h"
#include "lib/server/version.h"

namespace berth::server {
namespace {

namespace introspection = containerd::services::introspection::v1;

// One `field op value` term of a filter; op is "" when the field is named alone.
struct Term {
  std::string field;
  std::string op;
  std::string value;
};

absl::StatusOr<std::vector<Term>> ParseFilter(absl::string_view filter) {
  std::vector<Term> terms;
  for (absl::string_view raw : absl::StrSplit(filter, ',')) {
    absl::string_view text = absl::StripAsciiWhitespace(raw);
    Term term;
    size_t pos = text.find_first_of("!=~");
    if (pos == absl::string_view::npos) {
      term.field = std::string(text);
    } else {
      term.field = std::string(absl::StripAsciiWhitespace(text.substr(0, pos)));
      absl::string_view rest = text.substr(pos);
      if (absl::ConsumePrefix(&rest, "==")) {
        term.op = "==";
      } else if (absl::ConsumePrefix(&rest, "!=")) {
        term.op = "!=";
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("filter \"", filter, "\": only ==, != and presence are supported"));
      }
      rest = absl::StripAsciiWhitespace(rest);
      // containerd's filters allow quoted values.
      if (rest.size() >= 2 && rest.front() == '"' && rest.back() == '"') {
        rest = rest.substr(1, rest.size() - 2);
      }
      term.value = std::string(rest);
    }
    if (term.field != "type" && term.field != "id") {
      return absl::InvalidArgumentError(absl::StrCat(
          "filter \"", filter, "\": unknown field \"", term.field, "\" (type or id)"));
    }
    terms.push_back(std::move(term));
  }
  return terms;
}

bool Matches(const PluginInfo& plugin, const std::vector<Term>& terms) {
  for (const Term& term : terms) {
    const std::string& actual = term.field == "type" ? plugin.type : plugin.id;
    bool ok = term.op.empty()   ? !actual.empty()
              : term.op == "==" ? actual == term.value
                                : actual != term.value;
    if (!ok) {
      return false;
    }
  }
  return true;
}

}  // namespace

grpc::Status VersionService::Version(grpc::ServerContext* context,
                                     const google::protobuf::Empty* request,
                                     containerd::services::version::v1::VersionResponse* response) {
  response->set_version(BerthVersion());
  response->set_revision(BerthRevision());
  return grpc::Status::OK;
}

IntrospectionService::IntrospectionService(std::vector<PluginInfo> plugins, std::string uuid)
    : plugins_(std::move(plugins)), uuid_(std::move(uuid)) {}

grpc::Status IntrospectionService::Plugins(grpc::ServerContext* context,
                                           const introspection::PluginsRequest* request,
                                           introspection::PluginsResponse* response) {
  std::vector<std::vector<Term>> filters;
  for (const std::string& filter : request->filters()) {
    absl::StatusOr<std::vector<Term>> terms = ParseFilter(filter);
    if (!terms.ok()) {
      return ToGrpcStatus(terms.status());
    }
    filters.push_back(*std::move(terms));
  }
  for (const PluginInfo& plugin : plugins_) {
    bool selected = filters.empty();
    for (const std::vector<Term>& terms : filters) {
      selected = selected || Matches(plugin, terms);
    }
    if (selected) {
      introspection::Plugin* out = response->add_plugins();
      out->set_type(plugin.type);
      out->set_id(plugin.id);
    }
  }
  return grpc::Status::OK;
}

grpc::Status IntrospectionService::Server(grpc::ServerContext* context,
                                          const google::protobuf::Empty* request,
                                          introspection::ServerResponse* response) {
  response->set_uuid(uuid_);
  return grpc::Status::OK;
}

}  // namespace berth::server
