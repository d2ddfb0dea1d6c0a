#pragma once

// The base of imaged's ImageStore decorators (PublishingImageStore, HoldingImageStore): every
// call goes to the wrapped store; a decorator overrides the writes it adds to.

#include <string>
#include <vector>

#include "lib/images/image_store.h"

namespace berth::imaged {

class ForwardingImageStore : public images::ImageStore {
 public:
  absl::StatusOr<images::Image> Get(const Context& ctx, absl::string_view name) override {
    return store_.Get(ctx, name);
  }
  absl::StatusOr<std::vector<images::Image>> List(
      const Context& ctx, const std::vector<std::string>& filters) override {
    return store_.List(ctx, filters);
  }
  absl::StatusOr<images::Image> Create(const Context& ctx, const images::Image& image) override {
    return store_.Create(ctx, image);
  }
  absl::StatusOr<images::Image> Update(const Context& ctx, const images::Image& image,
                                       const std::vector<std::string>& fieldpaths) override {
    return store_.Update(ctx, image, fieldpaths);
  }
  absl::Status Delete(const Context& ctx, absl::string_view name, bool sync) override {
    return store_.Delete(ctx, name, sync);
  }

 protected:
  // `store` must outlive this object.
  explicit ForwardingImageStore(images::ImageStore& store) : store_(store) {}

  images::ImageStore& store_;
};

}  // namespace berth::imaged
