#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "lib/base/digest.h"

namespace berth::oci {

// An OCI content descriptor (containerd.types.Descriptor on the wire).
struct Descriptor {
  std::string media_type;
  Digest digest;
  int64_t size = 0;
  std::map<std::string, std::string> annotations;
};

}  // namespace berth::oci
