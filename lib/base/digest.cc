#include "lib/base/digest.h"

#include <openssl/evp.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace berth {
namespace {

const EVP_MD* MdFor(absl::string_view algorithm, size_t* hex_len) {
  if (algorithm == "sha256") {
    *hex_len = 64;
    return EVP_sha256();
  }
  if (algorithm == "sha512") {
    *hex_len = 128;
    return EVP_sha512();
  }
  return nullptr;
}

}  // namespace

absl::StatusOr<Digest> Digest::Parse(absl::string_view text) {
  size_t colon = text.find(':');
  if (colon == absl::string_view::npos || colon == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid digest \"", text, "\": want <algorithm>:<hex>"));
  }
  absl::string_view algorithm = text.substr(0, colon);
  absl::string_view hex = text.substr(colon + 1);
  size_t hex_len = 0;
  if (MdFor(algorithm, &hex_len) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid digest \"", text, "\": unsupported algorithm \"", algorithm, "\""));
  }
  if (hex.size() != hex_len) {
    return absl::InvalidArgumentError(absl::StrCat("invalid digest \"", text, "\": ", algorithm,
                                                   " wants ", hex_len, " hex characters, got ",
                                                   hex.size()));
  }
  for (char c : hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid digest \"", text, "\": not lowercase hex"));
    }
  }
  return Digest(std::string(algorithm), std::string(hex));
}

absl::StatusOr<std::unique_ptr<Digester>> Digester::Create(absl::string_view algorithm) {
  size_t hex_len = 0;
  const EVP_MD* md = MdFor(algorithm, &hex_len);
  if (md == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported digest algorithm \"", algorithm, "\""));
  }
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (ctx == nullptr || EVP_DigestInit_ex(ctx, md, nullptr) != 1) {
    EVP_MD_CTX_free(ctx);
    return absl::InternalError("cannot initialise OpenSSL digest");
  }
  return std::unique_ptr<Digester>(new Digester(std::string(algorithm), ctx));
}

std::unique_ptr<Digester> Digester::Sha256() { return *Create("sha256"); }

Digester::~Digester() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

void Digester::Update(const void* data, size_t size) {
  EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data, size);
}

Digest Digester::Sum() const {
  EVP_MD_CTX* copy = EVP_MD_CTX_new();
  EVP_MD_CTX_copy_ex(copy, static_cast<EVP_MD_CTX*>(ctx_));
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(copy, out, &len);
  EVP_MD_CTX_free(copy);
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    hex.push_back(kHex[out[i] >> 4]);
    hex.push_back(kHex[out[i] & 0xf]);
  }
  return Digest(algorithm_, std::move(hex));
}

Digest Sha256Of(absl::string_view data) {
  auto d = Digester::Sha256();
  d->Update(data);
  return d->Sum();
}

}  // namespace berth
