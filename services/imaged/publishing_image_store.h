#pragma once

// An ImageStore that publishes containerd's image events for every change it stores:
// /images/create, /images/update (ImageCreate/ImageUpdate: name and labels) and /images/delete,
// in the call's namespace, once the change is stored. A refused change publishes nothing. A
// failed publish is logged, not returned: the record is already stored, and the publisher's
// outbox makes a failure rare (only its own disk). Every writer of image records (the Images
// service, the Puller) goes through one, so no change goes unannounced. Thread-safe as the
// wrapped store and publisher are.

#include "lib/events/publisher.h"
#include "lib/images/image_store.h"
#include "services/imaged/forwarding_image_store.h"

namespace berth::imaged {

class PublishingImageStore final : public ForwardingImageStore {
 public:
  // `store` and `publisher` must outlive this object.
  PublishingImageStore(images::ImageStore& store, events::Publisher& publisher)
      : ForwardingImageStore(store), publisher_(publisher) {}

  absl::StatusOr<images::Image> Create(const Context& ctx, const images::Image& image) override;
  absl::StatusOr<images::Image> Update(const Context& ctx, const images::Image& image,
                                       const std::vector<std::string>& fieldpaths) override;
  absl::Status Delete(const Context& ctx, absl::string_view name, bool sync) override;

 private:
  void Publish(const Context& ctx, absl::string_view topic,
               const google::protobuf::Message& event);

  events::Publisher& publisher_;
};

}  // namespace berth::imaged
