#include "services/imaged/publishing_image_store.h"

#include "containerd/events/image.pb.h"
#include "lib/base/logging.h"
#include "lib/base/status_macros.h"

namespace berth::imaged {
namespace {

namespace v1 = ::containerd::services::images::v1;

// ImageCreate or ImageUpdate for `image`: both carry its name and labels.
template <typename Event>
Event ChangeEvent(const images::Image& image) {
  Event event;
  event.set_name(image.name);
  event.mutable_labels()->insert(image.labels.begin(), image.labels.end());
  return event;
}

}  // namespace

absl::StatusOr<images::Image> PublishingImageStore::Create(const Context& ctx,
                                                           const images::Image& image) {
  BERTH_ASSIGN_OR_RETURN(images::Image stored, store_.Create(ctx, image));
  Publish(ctx, "/images/create", ChangeEvent<v1::ImageCreate>(stored));
  return stored;
}

absl::StatusOr<images::Image> PublishingImageStore::Update(
    const Context& ctx, const images::Image& image, const std::vector<std::string>& fieldpaths) {
  BERTH_ASSIGN_OR_RETURN(images::Image stored, store_.Update(ctx, image, fieldpaths));
  Publish(ctx, "/images/update", ChangeEvent<v1::ImageUpdate>(stored));
  return stored;
}

absl::Status PublishingImageStore::Delete(const Context& ctx, absl::string_view name,
                                          bool sync) {
  BERTH_RETURN_IF_ERROR(store_.Delete(ctx, name, sync));
  v1::ImageDelete event;
  event.set_name(std::string(name));
  Publish(ctx, "/images/delete", event);
  return absl::OkStatus();
}

void PublishingImageStore::Publish(const Context& ctx, absl::string_view topic,
                                   const google::protobuf::Message& event) {
  if (absl::Status status = publisher_.Publish(ctx.ns, topic, event); !status.ok()) {
    BERTH_LOG(Warn) << "publish " << topic << ": " << status;
  }
}

}  // namespace berth::imaged
