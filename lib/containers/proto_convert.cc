#include "lib/containers/proto_convert.h"

#include "lib/content/proto_convert.h"

namespace berth::containers {
namespace {

namespace v1 = ::containerd::services::containers::v1;

void ToProto(const Any& any, google::protobuf::Any* proto) {
  proto->set_type_url(any.type_url);
  proto->set_value(any.value);
}

Any FromProto(const google::protobuf::Any& proto) { return Any{proto.type_url(), proto.value()}; }

}  // namespace

v1::Container ContainerToProto(const Container& container) {
  v1::Container proto;
  proto.set_id(container.id);
  proto.mutable_labels()->insert(container.labels.begin(), container.labels.end());
  proto.set_image(container.image);
  proto.mutable_runtime()->set_name(container.runtime.name);
  if (container.runtime.options.IsSet()) {
    ToProto(container.runtime.options, proto.mutable_runtime()->mutable_options());
  }
  if (container.spec.IsSet()) {
    ToProto(container.spec, proto.mutable_spec());
  }
  proto.set_snapshotter(container.snapshotter);
  proto.set_snapshot_key(container.snapshot_key);
  *proto.mutable_created_at() = content::TimeToProto(container.created_at);
  *proto.mutable_updated_at() = content::TimeToProto(container.updated_at);
  for (const auto& [key, any] : container.extensions) {
    ToProto(any, &(*proto.mutable_extensions())[key]);
  }
  return proto;
}

Container ContainerFromProto(const v1::Container& proto) {
  Container container;
  container.id = proto.id();
  container.labels.insert(proto.labels().begin(), proto.labels().end());
  container.image = proto.image();
  container.runtime.name = proto.runtime().name();
  if (proto.runtime().has_options()) {
    container.runtime.options = FromProto(proto.runtime().options());
  }
  if (proto.has_spec()) {
    container.spec = FromProto(proto.spec());
  }
  container.snapshotter = proto.snapshotter();
  container.snapshot_key = proto.snapshot_key();
  container.created_at = content::TimeFromProto(proto.created_at());
  container.updated_at = content::TimeFromProto(proto.updated_at());
  for (const auto& [key, any] : proto.extensions()) {
    container.extensions[key] = FromProto(any);
  }
  return container;
}

}  // namespace berth::containers
