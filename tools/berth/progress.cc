#include "tools/berth/progress.h"

#include <cctype>
#include <iostream>

#include <nlohmann/json.hpp>

#include "tools/berth/output.h"

namespace berth::cli {

namespace pb = ::berth::distribution::v1;

namespace {

std::string StateName(pb::BlobProgress::State state) {
  std::string name = pb::BlobProgress::State_Name(state);
  for (char& c : name) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return name;
}

}  // namespace

void BlobProgressPrinter::Print(const pb::BlobProgress& blob) {
  if (json_) {
    std::cout << nlohmann::json{{"digest", blob.digest()},
                                {"media_type", blob.media_type()},
                                {"offset", blob.offset()},
                                {"total", blob.total()},
                                {"state", StateName(blob.state())}}
                     .dump()
              << std::endl;
    return;
  }
  auto [it, inserted] = last_.emplace(blob.digest(), blob.state());
  if (!inserted && it->second == blob.state()) {
    return;
  }
  it->second = blob.state();
  std::cout << blob.digest() << ' ' << StateName(blob.state()) << ' ' << HumanSize(blob.total())
            << std::endl;
}

void PrintTarget(bool json, absl::string_view verb, absl::string_view key, absl::string_view name,
                 const ::containerd::types::Descriptor& target) {
  if (json) {
    std::cout << nlohmann::json{{std::string(key), std::string(name)},
                                {"digest", target.digest()},
                                {"media_type", target.media_type()},
                                {"size", target.size()}}
                     .dump()
              << std::endl;
  } else {
    std::cout << verb << ' ' << name << ' ' << target.digest() << std::endl;
  }
}

void PrintImage(bool json, absl::string_view verb, const pb::PulledImage& image) {
  PrintTarget(json, verb, "name", image.name(), image.target());
}

}  // namespace berth::cli
