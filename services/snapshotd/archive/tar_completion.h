#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/status/statusor.h"
#include "lib/base/byte_stream.h"

namespace berth::snapshotd::archive {

// Tars written without their closing blocks are common in the wild (umoci 0.4 ends a layer
// right after the last file's data: no padding to 512 bytes, no end-of-archive blocks), and
// containerd's Go reader accepts them. libarchive does not. This source follows the tar block
// structure of what passes through, and at the end of the input, if it ended exactly at an
// entry boundary or right after an entry's last data byte, supplies the missing zero padding
// and end-of-archive blocks. A stream cut anywhere else (inside a header or inside a file's
// data) is left as it is, so libarchive still reports it truncated. The bytes added are never
// part of the layer's digest, which is computed on the input before this point.
class TarEndCompletion : public ByteSource {
 public:
  explicit TarEndCompletion(ByteSource& inner) : inner_(inner) {}

  // Whether the input ended inside a header or an entry's data: the tar is truncated.
  bool cut() const { return cut_; }

  absl::StatusOr<size_t> Read(char* buf, size_t size) override {
    if (!tail_.empty()) {
      size_t n = std::min(size, tail_.size() - tail_pos_);
      std::memcpy(buf, tail_.data() + tail_pos_, n);
      tail_pos_ += n;
      return n;
    }
    absl::StatusOr<size_t> n = inner_.Read(buf, size);
    if (!n.ok()) {
      return n;
    }
    if (*n > 0) {
      Track(buf, *n);
      return n;
    }
    if (!CompleteTail()) {
      cut_ = true;
      return 0;
    }
    return Read(buf, size);
  }

 private:
  static constexpr size_t kBlock = 512;

  void Track(const char* p, size_t n) {
    while (n > 0) {
      if (state_ == State::kHeader) {
        size_t take = std::min(n, kBlock - header_.size());
        header_.append(p, take);
        p += take;
        n -= take;
        if (header_.size() == kBlock) {
          StartEntry();
        }
      } else if (state_ == State::kData || state_ == State::kPadding) {
        size_t take = static_cast<size_t>(std::min<uint64_t>(n, remaining_));
        if (state_ == State::kData && collect_pax_ && pax_.size() < (1u << 20)) {
          pax_.append(p, take);
        }
        p += take;
        n -= take;
        remaining_ -= take;
        if (remaining_ == 0) {
          if (state_ == State::kData) {
            FinishData();
          } else {
            state_ = State::kHeader;
          }
        }
      } else {
        return;  // after the end-of-archive marker nothing matters
      }
    }
  }

  void StartEntry() {
    std::string header = std::move(header_);
    header_.clear();
    if (header.find_first_not_of('\0') == std::string::npos) {
      state_ = State::kEnd;
      return;
    }
    uint64_t size = ParseSize(header.substr(124, 12));
    char type = header[156];
    if (next_size_ >= 0 && type != 'x' && type != 'g') {
      size = static_cast<uint64_t>(next_size_);
      next_size_ = -1;
    }
    // Go's reader (and POSIX) give these types no data, whatever the size field says.
    if (type == '1' || type == '2' || type == '3' || type == '4' || type == '5' || type == '6') {
      size = 0;
    }
    collect_pax_ = type == 'x';
    pax_.clear();
    padding_ = (kBlock - size % kBlock) % kBlock;
    remaining_ = size;
    state_ = State::kData;
    if (remaining_ == 0) {
      FinishData();
    }
  }

  void FinishData() {
    if (collect_pax_) {
      // Records are "<len> key=value\n"; only size matters here.
      size_t at = pax_.find(" size=");
      if (at != std::string::npos) {
        next_size_ = std::strtoll(pax_.c_str() + at + 6, nullptr, 10);
      }
      collect_pax_ = false;
    }
    remaining_ = padding_;
    state_ = remaining_ == 0 ? State::kHeader : State::kPadding;
  }

  static uint64_t ParseSize(const std::string& field) {
    if (!field.empty() && (static_cast<unsigned char>(field[0]) & 0x80) != 0) {
      uint64_t v = 0;  // base-256 (GNU), big-endian after the marker bit
      for (size_t i = 0; i < field.size(); ++i) {
        unsigned char c = static_cast<unsigned char>(field[i]);
        v = (v << 8) | (i == 0 ? (c & 0x7f) : c);
      }
      return v;
    }
    uint64_t v = 0;
    for (char c : field) {
      if (c >= '0' && c <= '7') {
        v = v * 8 + static_cast<uint64_t>(c - '0');
      } else if (c != ' ' && c != '\0') {
        break;
      }
    }
    return v;
  }

  // At the end of the input: true (and the tail to send set) when only padding and the
  // end-of-archive blocks are missing.
  bool CompleteTail() {
    size_t pad = 0;
    if (state_ == State::kHeader && header_.empty()) {
      pad = 0;
    } else if (state_ == State::kPadding) {
      pad = static_cast<size_t>(remaining_);
    } else if (state_ == State::kEnd) {
      pad = 0;  // one zero block seen; a second one is harmless
    } else {
      return false;
    }
    tail_.assign(pad + 2 * kBlock, '\0');
    tail_pos_ = 0;
    return true;
  }

  enum class State { kHeader, kData, kPadding, kEnd };

  ByteSource& inner_;
  State state_ = State::kHeader;
  std::string header_;
  uint64_t remaining_ = 0;
  uint64_t padding_ = 0;
  bool collect_pax_ = false;
  std::string pax_;
  int64_t next_size_ = -1;
  std::string tail_;
  size_t tail_pos_ = 0;
  bool cut_ = false;
};

}  // namespace berth::snapshotd::archive
