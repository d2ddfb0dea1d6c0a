#include "services/execd/containers_service.h"

#include <utility>
#include <vector>

#include "containerd/events/container.pb.h"
#include "lib/base/grpc_status.h"
#include "lib/base/logging.h"
#include "lib/base/status_macros.h"
#include "lib/containers/proto_convert.h"
#include "lib/server/request_context.h"

namespace berth::execd {
namespace {

namespace v1 = ::containerd::services::containers::v1;
namespace ev = ::containerd::events;
using containers::Container;

ev::ContainerCreate CreateEvent(const Container& c) {
  ev::ContainerCreate event;
  event.set_id(c.id);
  event.set_image(c.image);
  event.mutable_runtime()->set_name(c.runtime.name);
  if (c.runtime.options.IsSet()) {
    event.mutable_runtime()->mutable_options()->set_type_url(c.runtime.options.type_url);
    event.mutable_runtime()->mutable_options()->set_value(c.runtime.options.value);
  }
  return event;
}

ev::ContainerUpdate UpdateEvent(const Container& c) {
  ev::ContainerUpdate event;
  event.set_id(c.id);
  event.set_image(c.image);
  event.mutable_labels()->insert(c.labels.begin(), c.labels.end());
  event.set_snapshot_key(c.snapshot_key);
  return event;
}

std::vector<std::string> FieldPaths(const v1::UpdateContainerRequest& request) {
  return {request.update_mask().paths().begin(), request.update_mask().paths().end()};
}

}  // namespace

ContainersService::ContainersService(containers::ContainerStore& store,
                                     ContainersServiceOptions options)
    : store_(store), options_(std::move(options)) {
  if (options_.registry != nullptr) {
    records_ = &prometheus::BuildGauge()
                    .Name("berth_containers_records")
                    .Help("Container records execd holds, in every namespace")
                    .Register(*options_.registry)
                    .Add({});
  }
  RefreshGauge();
}

grpc::Status ContainersService::Get(grpc::ServerContext* server_context,
                                    const v1::GetContainerRequest* request,
                                    v1::GetContainerResponse* response) {
  absl::StatusOr<Container> container = [&]() -> absl::StatusOr<Container> {
    BERTH_ASSIGN_OR_RETURN(Context ctx,
                           server::ContextFrom(*server_context, options_.default_namespace));
    return store_.Get(ctx, request->id());
  }();
  if (!container.ok()) {
    return ToGrpcStatus(container.status());
  }
  *response->mutable_container() = containers::ContainerToProto(*container);
  return grpc::Status::OK;
}

grpc::Status ContainersService::List(grpc::ServerContext* server_context,
                                     const v1::ListContainersRequest* request,
                                     v1::ListContainersResponse* response) {
  absl::StatusOr<std::vector<Container>> list = Select(*server_context, *request);
  if (!list.ok()) {
    return ToGrpcStatus(list.status());
  }
  for (const Container& c : *list) {
    *response->add_containers() = containers::ContainerToProto(c);
  }
  return grpc::Status::OK;
}

grpc::Status ContainersService::ListStream(grpc::ServerContext* server_context,
                                           const v1::ListContainersRequest* request,
                                           grpc::ServerWriter<v1::ListContainerMessage>* writer) {
  absl::StatusOr<std::vector<Container>> list = Select(*server_context, *request);
  if (!list.ok()) {
    return ToGrpcStatus(list.status());
  }
  for (const Container& c : *list) {
    v1::ListContainerMessage message;
    *message.mutable_container() = containers::ContainerToProto(c);
    if (!writer->Write(message)) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
    }
  }
  return grpc::Status::OK;
}

grpc::Status ContainersService::Create(grpc::ServerContext* server_context,
                                       const v1::CreateContainerRequest* request,
                                       v1::CreateContainerResponse* response) {
  absl::StatusOr<Container> created = [&]() -> absl::StatusOr<Container> {
    BERTH_ASSIGN_OR_RETURN(Context ctx,
                           server::ContextFrom(*server_context, options_.default_namespace));
    BERTH_ASSIGN_OR_RETURN(
        Container stored,
        store_.Create(ctx, containers::ContainerFromProto(request->container())));
    Publish(ctx, "/containers/create", CreateEvent(stored));
    return stored;
  }();
  if (!created.ok()) {
    return ToGrpcStatus(created.status());
  }
  RefreshGauge();
  *response->mutable_container() = containers::ContainerToProto(*created);
  return grpc::Status::OK;
}

grpc::Status ContainersService::Update(grpc::ServerContext* server_context,
                                       const v1::UpdateContainerRequest* request,
                                       v1::UpdateContainerResponse* response) {
  absl::StatusOr<Container> updated = [&]() -> absl::StatusOr<Container> {
    BERTH_ASSIGN_OR_RETURN(Context ctx,
                           server::ContextFrom(*server_context, options_.default_namespace));
    BERTH_ASSIGN_OR_RETURN(
        Container stored, store_.Update(ctx, containers::ContainerFromProto(request->container()),
                                        FieldPaths(*request)));
    Publish(ctx, "/containers/update", UpdateEvent(stored));
    return stored;
  }();
  if (!updated.ok()) {
    return ToGrpcStatus(updated.status());
  }
  *response->mutable_container() = containers::ContainerToProto(*updated);
  return grpc::Status::OK;
}

grpc::Status ContainersService::Delete(grpc::ServerContext* server_context,
                                       const v1::DeleteContainerRequest* request,
                                       google::protobuf::Empty* response) {
  absl::Status deleted = [&]() -> absl::Status {
    BERTH_ASSIGN_OR_RETURN(Context ctx,
                           server::ContextFrom(*server_context, options_.default_namespace));
    BERTH_RETURN_IF_ERROR(store_.Delete(ctx, request->id()));
    ev::ContainerDelete event;
    event.set_id(request->id());
    Publish(ctx, "/containers/delete", event);
    return absl::OkStatus();
  }();
  if (!deleted.ok()) {
    return ToGrpcStatus(deleted);
  }
  RefreshGauge();
  return grpc::Status::OK;
}

absl::StatusOr<std::vector<Container>> ContainersService::Select(
    const grpc::ServerContext& server_context, const v1::ListContainersRequest& request) {
  BERTH_ASSIGN_OR_RETURN(Context ctx,
                         server::ContextFrom(server_context, options_.default_namespace));
  return store_.List(ctx, {request.filters().begin(), request.filters().end()});
}

void ContainersService::Publish(const Context& ctx, absl::string_view topic,
                                const google::protobuf::Message& event) {
  if (options_.publisher == nullptr) {
    return;
  }
  if (absl::Status status = options_.publisher->Publish(ctx.ns, topic, event); !status.ok()) {
    BERTH_LOG(Warn) << "publish " << topic << ": " << status;
  }
}

void ContainersService::RefreshGauge() {
  if (records_ == nullptr || !options_.count) {
    return;
  }
  absl::StatusOr<int64_t> count = options_.count();
  if (count.ok()) {
    records_->Set(static_cast<double>(*count));
  }
}

}  // namespace berth::execd
