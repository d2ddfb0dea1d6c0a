#pragma once

// What `berth pull` and `berth import` print from imaged's progress streams: one line per blob
// state change ("DIGEST STATE SIZE") and one per image at the end ("VERB NAME DIGEST"); with
// --json, one JSON object a line for each blob message and each image.

#include <map>
#include <string>

#include "absl/strings/string_view.h"
#include "berth/distribution/v1/distribution.pb.h"

namespace berth::cli {

class BlobProgressPrinter {
 public:
  explicit BlobProgressPrinter(bool json) : json_(json) {}
  // Prints `blob` unless (not --json) its digest's state is the one printed last.
  void Print(const ::berth::distribution::v1::BlobProgress& blob);

 private:
  const bool json_;
  std::map<std::string, ::berth::distribution::v1::BlobProgress::State> last_;
};

void PrintImage(bool json, absl::string_view verb,
                const ::berth::distribution::v1::PulledImage& image);
// The same for any result naming a target: `{"<key>": name, "digest", "media_type", "size"}`
// with --json, else `VERB NAME DIGEST`.
void PrintTarget(bool json, absl::string_view verb, absl::string_view key, absl::string_view name,
                 const ::containerd::types::Descriptor& target);

}  // namespace berth::cli
