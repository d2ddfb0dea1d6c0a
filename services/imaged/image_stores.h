#pragma once

// What a pull (puller.h) and an import (importer.h) write into: the content store, the leases
// that protect their work, the unpacker (may be null: nothing can be unpacked) and the image
// records. Each keeps these as its members by deriving from ImageStores; every reference must
// outlive the object.

#include "lib/content/content_store.h"
#include "lib/images/image_store.h"
#include "lib/leases/lease_manager.h"
#include "lib/snapshots/unpacker.h"

namespace berth::imaged {

class ImageStores {
 protected:
  ImageStores(content::ContentStore& content, leases::LeaseManager& leases,
              snapshots::Unpacker* unpacker, images::ImageStore& images)
      : content_(content), leases_(leases), unpacker_(unpacker), images_(images) {}

  content::ContentStore& content_;
  leases::LeaseManager& leases_;
  snapshots::Unpacker* const unpacker_;
  images::ImageStore& images_;
};

}  // namespace berth::imaged
