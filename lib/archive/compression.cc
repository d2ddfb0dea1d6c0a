#include "lib/archive/compression.h"

#include <isa-l/igzip_lib.h>
#include <zlib.h>
#include <zstd.h>

#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace berth::archive {

namespace {

constexpr size_t kChunk = 1 << 20;

constexpr absl::string_view kOciLayer = "application/vnd.oci.image.layer.v1.tar";
constexpr absl::string_view kOciNondistributable =
    "application/vnd.oci.image.layer.nondistributable.v1.tar";
constexpr absl::string_view kDockerLayer = "application/vnd.docker.image.rootfs.diff.tar";
constexpr absl::string_view kDockerForeign =
    "application/vnd.docker.image.rootfs.foreign.diff.tar";

inflate_state* Inflater(void* p) { return static_cast<inflate_state*>(p); }

// Starts (or restarts, for the next member of a concatenated stream) a gzip member: ISA-L
// parses the header and checks the trailer's CRC and length itself.
void StartGzipMember(inflate_state* state) {
  isal_inflate_reset(state);
  state->crc_flag = ISAL_GZIP;
}

const char* IsalInflateError(int ret) {
  switch (ret) {
    case ISAL_INVALID_BLOCK:
      return "invalid deflate block";
    case ISAL_INVALID_SYMBOL:
      return "invalid deflate symbol";
    case ISAL_INVALID_LOOKBACK:
      return "invalid back-reference distance";
    case ISAL_INVALID_WRAPPER:
      return "not a gzip header";
    case ISAL_UNSUPPORTED_METHOD:
      return "unsupported compression method";
    case ISAL_INCORRECT_CHECKSUM:
      return "incorrect checksum";
    case ISAL_NEED_DICT:
      return "a preset dictionary is required";
    default:
      return "inflate error";
  }
}

}  // namespace

absl::string_view CompressionName(Compression c) {
  switch (c) {
    case Compression::kNone:
      return "none";
    case Compression::kGzip:
      return "gzip";
    case Compression::kZstd:
      return "zstd";
  }
  return "unknown";
}

absl::StatusOr<Compression> CompressionOfMediaType(absl::string_view media_type) {
  if (media_type.empty()) {
    return Compression::kNone;
  }
  for (absl::string_view base : {kOciLayer, kOciNondistributable}) {
    if (media_type == base) {
      return Compression::kNone;
    }
    if (media_type == absl::StrCat(base, "+gzip")) {
      return Compression::kGzip;
    }
    if (media_type == absl::StrCat(base, "+zstd")) {
      return Compression::kZstd;
    }
  }
  for (absl::string_view base : {kDockerLayer, kDockerForeign}) {
    if (media_type == base) {
      return Compression::kNone;
    }
    if (media_type == absl::StrCat(base, ".gzip")) {
      return Compression::kGzip;
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported layer media type \"", media_type, "\""));
}

std::string UncompressedMediaType(absl::string_view media_type) {
  for (absl::string_view suffix : {"+gzip", "+zstd", ".gzip"}) {
    if (absl::EndsWith(media_type, suffix)) {
      return std::string(media_type.substr(0, media_type.size() - suffix.size()));
    }
  }
  return std::string(media_type);
}

Compression DetectCompression(absl::string_view head) {
  if (head.size() >= 2 && static_cast<unsigned char>(head[0]) == 0x1f &&
      static_cast<unsigned char>(head[1]) == 0x8b) {
    return Compression::kGzip;
  }
  if (head.size() >= 4 && static_cast<unsigned char>(head[0]) == 0x28 &&
      static_cast<unsigned char>(head[1]) == 0xb5 && static_cast<unsigned char>(head[2]) == 0x2f &&
      static_cast<unsigned char>(head[3]) == 0xfd) {
    return Compression::kZstd;
  }
  return Compression::kNone;
}

// ---- DecompressingSource ----

absl::StatusOr<std::unique_ptr<DecompressingSource>> DecompressingSource::Create(ByteSource& in) {
  auto buf = std::make_unique<char[]>(kChunk);
  size_t len = 0;
  bool eof = false;
  while (len < 4) {
    absl::StatusOr<size_t> n = in.Read(buf.get() + len, kChunk - len);
    if (!n.ok()) {
      return n.status();
    }
    if (*n == 0) {
      eof = true;
      break;
    }
    len += *n;
  }
  Compression c = DetectCompression(absl::string_view(buf.get(), len));
  std::unique_ptr<DecompressingSource> src(new DecompressingSource(in, c));
  src->in_buf_ = std::move(buf);
  src->in_len_ = len;
  src->in_eof_ = eof;
  src->consumed_ = static_cast<int64_t>(len);
  if (c == Compression::kGzip) {
    auto* state = new inflate_state;
    isal_inflate_init(state);
    state->crc_flag = ISAL_GZIP;
    src->inflate_ = state;
  } else if (c == Compression::kZstd) {
    ZSTD_DStream* ds = ZSTD_createDStream();
    if (ds == nullptr) {
      return absl::ResourceExhaustedError("ZSTD_createDStream failed");
    }
    src->zstd_ = ds;
  }
  return src;
}

DecompressingSource::DecompressingSource(ByteSource& in, Compression compression)
    : in_(in), compression_(compression), digester_(Digester::Sha256()) {}

DecompressingSource::~DecompressingSource() {
  delete Inflater(inflate_);
  if (zstd_ != nullptr) {
    ZSTD_freeDStream(static_cast<ZSTD_DStream*>(zstd_));
  }
}

Digest DecompressingSource::UncompressedDigest() const { return digester_->Sum(); }

absl::StatusOr<size_t> DecompressingSource::Fill() {
  absl::StatusOr<size_t> n = in_.Read(in_buf_.get(), kChunk);
  if (!n.ok()) {
    return n.status();
  }
  in_pos_ = 0;
  in_len_ = *n;
  in_eof_ = *n == 0;
  consumed_ += static_cast<int64_t>(*n);
  return *n;
}

absl::StatusOr<size_t> DecompressingSource::Read(char* buf, size_t size) {
  absl::StatusOr<size_t> n;
  switch (compression_) {
    case Compression::kNone:
      n = ReadRaw(buf, size);
      break;
    case Compression::kGzip:
      n = ReadGzip(buf, size);
      break;
    case Compression::kZstd:
      n = ReadZstd(buf, size);
      break;
  }
  if (n.ok() && *n > 0) {
    digester_->Update(buf, *n);
    produced_ += static_cast<int64_t>(*n);
  }
  return n;
}

absl::StatusOr<size_t> DecompressingSource::ReadRaw(char* buf, size_t size) {
  if (in_pos_ < in_len_) {
    size_t n = std::min(size, in_len_ - in_pos_);
    memcpy(buf, in_buf_.get() + in_pos_, n);
    in_pos_ += n;
    return n;
  }
  if (in_eof_) {
    return 0;
  }
  absl::StatusOr<size_t> n = in_.Read(buf, size);
  if (n.ok()) {
    consumed_ += static_cast<int64_t>(*n);
    in_eof_ = *n == 0;
  }
  return n;
}

absl::StatusOr<size_t> DecompressingSource::ReadGzip(char* buf, size_t size) {
  inflate_state* state = Inflater(inflate_);
  state->next_out = reinterpret_cast<uint8_t*>(buf);
  state->avail_out = static_cast<uint32_t>(std::min<size_t>(size, 1u << 30));
  const uint32_t want = state->avail_out;
  while (true) {
    if (stream_end_ && in_pos_ < in_len_) {
      // Another gzip member follows (concatenated gzip is one stream).
      StartGzipMember(state);
      stream_end_ = false;
    }
    if (!stream_end_) {
      state->next_in = reinterpret_cast<uint8_t*>(in_buf_.get() + in_pos_);
      state->avail_in = static_cast<uint32_t>(in_len_ - in_pos_);
      int ret = isal_inflate(state);
      in_pos_ = in_len_ - state->avail_in;
      if (ret != ISAL_DECOMP_OK) {
        return absl::DataLossError(absl::StrCat("corrupt gzip data: ", IsalInflateError(ret)));
      }
      if (state->block_state == ISAL_BLOCK_FINISH) {
        stream_end_ = true;
      }
    }
    if (state->avail_out != want) {
      return static_cast<size_t>(want - state->avail_out);
    }
    if (in_pos_ == in_len_) {
      if (in_eof_) {
        if (stream_end_) {
          return 0;
        }
        return absl::DataLossError("gzip stream is truncated");
      }
      absl::StatusOr<size_t> n = Fill();
      if (!n.ok()) {
        return n.status();
      }
    }
  }
}

absl::StatusOr<size_t> DecompressingSource::ReadZstd(char* buf, size_t size) {
  auto* ds = static_cast<ZSTD_DStream*>(zstd_);
  ZSTD_outBuffer out{buf, size, 0};
  while (true) {
    ZSTD_inBuffer in{in_buf_.get() + in_pos_, in_len_ - in_pos_, 0};
    size_t ret = ZSTD_decompressStream(ds, &out, &in);
    in_pos_ += in.pos;
    if (ZSTD_isError(ret)) {
      return absl::DataLossError(absl::StrCat("corrupt zstd data: ", ZSTD_getErrorName(ret)));
    }
    if (in.pos > 0 || out.pos > 0) {
      // A call without progress says nothing about frame boundaries (at one, it asks for
      // the next frame's header).
      stream_end_ = ret == 0;
    }
    if (out.pos > 0) {
      return out.pos;
    }
    if (in_pos_ == in_len_) {
      if (in_eof_) {
        if (stream_end_) {
          return 0;
        }
        return absl::DataLossError("zstd stream is truncated");
      }
      absl::StatusOr<size_t> n = Fill();
      if (!n.ok()) {
        return n.status();
      }
    }
  }
}

// ---- compressing sinks ----

namespace {

class GzipSink : public ByteSink {
 public:
  GzipSink(ByteSink& out) : out_(out), buf_(new char[kChunk]) { memset(&z_, 0, sizeof(z_)); }
  ~GzipSink() override {
    if (initialized_) {
      deflateEnd(&z_);
    }
  }
  absl::Status Init(int level) {
    if (deflateInit2(&z_, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
      return absl::InternalError("deflateInit2 failed");
    }
    initialized_ = true;
    return absl::OkStatus();
  }
  absl::Status Write(absl::string_view data) override { return Run(data, Z_NO_FLUSH); }
  absl::Status Close() override {
    absl::Status s = Run(absl::string_view(), Z_FINISH);
    if (!s.ok()) {
      return s;
    }
    return out_.Close();
  }

 private:
  absl::Status Run(absl::string_view data, int flush) {
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    z_.avail_in = static_cast<uInt>(data.size());
    while (true) {
      z_.next_out = reinterpret_cast<Bytef*>(buf_.get());
      z_.avail_out = static_cast<uInt>(kChunk);
      int ret = deflate(&z_, flush);
      if (ret == Z_STREAM_ERROR) {
        return absl::InternalError("deflate failed");
      }
      size_t have = kChunk - z_.avail_out;
      if (have > 0) {
        absl::Status s = out_.Write(absl::string_view(buf_.get(), have));
        if (!s.ok()) {
          return s;
        }
      }
      if (flush == Z_FINISH ? ret == Z_STREAM_END : (z_.avail_in == 0 && z_.avail_out != 0)) {
        return absl::OkStatus();
      }
    }
  }

  ByteSink& out_;
  std::unique_ptr<char[]> buf_;
  z_stream z_;
  bool initialized_ = false;
};

class ZstdSink : public ByteSink {
 public:
  ZstdSink(ByteSink& out) : out_(out), buf_(new char[kChunk]), cs_(ZSTD_createCStream()) {}
  ~ZstdSink() override { ZSTD_freeCStream(cs_); }
  absl::Status Init(int level) {
    if (cs_ == nullptr) {
      return absl::ResourceExhaustedError("ZSTD_createCStream failed");
    }
    ZSTD_CCtx_setParameter(cs_, ZSTD_c_compressionLevel, level < 0 ? 3 : level);
    return absl::OkStatus();
  }
  absl::Status Write(absl::string_view data) override { return Run(data, ZSTD_e_continue); }
  absl::Status Close() override {
    absl::Status s = Run(absl::string_view(), ZSTD_e_end);
    if (!s.ok()) {
      return s;
    }
    return out_.Close();
  }

 private:
  absl::Status Run(absl::string_view data, ZSTD_EndDirective mode) {
    ZSTD_inBuffer in{data.data(), data.size(), 0};
    while (true) {
      ZSTD_outBuffer out{buf_.get(), kChunk, 0};
      size_t ret = ZSTD_compressStream2(cs_, &out, &in, mode);
      if (ZSTD_isError(ret)) {
        return absl::InternalError(absl::StrCat("zstd: ", ZSTD_getErrorName(ret)));
      }
      if (out.pos > 0) {
        absl::Status s = out_.Write(absl::string_view(buf_.get(), out.pos));
        if (!s.ok()) {
          return s;
        }
      }
      if (mode == ZSTD_e_end ? ret == 0 : in.pos == in.size) {
        return absl::OkStatus();
      }
    }
  }

  ByteSink& out_;
  std::unique_ptr<char[]> buf_;
  ZSTD_CStream* cs_;
};

class PassSink : public ByteSink {
 public:
  explicit PassSink(ByteSink& out) : out_(out) {}
  absl::Status Write(absl::string_view data) override { return out_.Write(data); }
  absl::Status Close() override { return out_.Close(); }

 private:
  ByteSink& out_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ByteSink>> NewCompressingSink(ByteSink& out,
                                                             Compression compression,
                                                             int level) {
  switch (compression) {
    case Compression::kNone:
      return std::unique_ptr<ByteSink>(new PassSink(out));
    case Compression::kGzip: {
      auto sink = std::make_unique<GzipSink>(out);
      absl::Status s = sink->Init(level < 0 ? Z_DEFAULT_COMPRESSION : level);
      if (!s.ok()) {
        return s;
      }
      return std::unique_ptr<ByteSink>(std::move(sink));
    }
    case Compression::kZstd: {
      auto sink = std::make_unique<ZstdSink>(out);
      absl::Status s = sink->Init(level);
      if (!s.ok()) {
        return s;
      }
      return std::unique_ptr<ByteSink>(std::move(sink));
    }
  }
  return absl::InvalidArgumentError("unknown compression");
}

}  // namespace berth::archive
