#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace berth {

// A content digest, "<algorithm>:<hex>", as OCI and containerd define it. Only sha256 and sha512
// are supported. A default-constructed Digest is empty (IsEmpty()); every other Digest was
// validated by Parse or produced by a Digester.
class Digest {
 public:
  Digest() = default;

  // Strict: a known algorithm, ':' and exactly the right number of lowercase hex characters.
  // Errors are InvalidArgument, naming what is wrong.
  static absl::StatusOr<Digest> Parse(absl::string_view text);

  bool IsEmpty() const { return algorithm_.empty(); }
  const std::string& algorithm() const { return algorithm_; }
  const std::string& hex() const { return hex_; }
  std::string ToString() const { return IsEmpty() ? std::string() : algorithm_ + ":" + hex_; }

  friend bool operator==(const Digest& a, const Digest& b) {
    return a.algorithm_ == b.algorithm_ && a.hex_ == b.hex_;
  }
  friend bool operator!=(const Digest& a, const Digest& b) { return !(a == b); }
  friend bool operator<(const Digest& a, const Digest& b) { return a.ToString() < b.ToString(); }

 private:
  Digest(std::string algorithm, std::string hex)
      : algorithm_(std::move(algorithm)), hex_(std::move(hex)) {}
  friend class Digester;

  std::string algorithm_;
  std::string hex_;
};

// Streaming hash. Not thread-safe. Update may be called any number of times; Sum does not
// reset the state, so a running digest can be read mid-stream (the Write API's Status needs it).
class Digester {
 public:
  // algorithm: "sha256" or "sha512"; InvalidArgument otherwise.
  static absl::StatusOr<std::unique_ptr<Digester>> Create(absl::string_view algorithm);
  static std::unique_ptr<Digester> Sha256();
  ~Digester();
  Digester(const Digester&) = delete;
  Digester& operator=(const Digester&) = delete;

  void Update(const void* data, size_t size);
  void Update(absl::string_view data) { Update(data.data(), data.size()); }
  Digest Sum() const;
  const std::string& algorithm() const { return algorithm_; }

 private:
  Digester(std::string algorithm, void* ctx) : algorithm_(std::move(algorithm)), ctx_(ctx) {}
  std::string algorithm_;
  void* ctx_;  // EVP_MD_CTX*
};

// The digest of a whole buffer, sha256.
Digest Sha256Of(absl::string_view data);

}  // namespace berth
