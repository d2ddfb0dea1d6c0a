#pragma once

// What `berth pull`, `push` and `import` print from imaged's progress streams, in one of three
// modes:
// - kTerminal (stdout is a terminal, no --json): a live drawing, one line per blob in the order
//   they first appear, docker-like ("3f1a2b4c5d6e: downloading [=====>     ] 1.2MB/4.5MB"),
//   redrawn in place (the cursor moved up over the previous drawing with ANSI escapes, each
//   line cleared before it is written), then a summary line from Finish.
// - kLines (stdout is not a terminal): one line per blob state change ("DIGEST STATE SIZE"),
//   no escape sequences.
// - kJson (--json): one JSON object a line per blob message.
// After any of them, one line per image ("VERB NAME DIGEST", or a JSON object).

#include <cstdint>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "berth/distribution/v1/distribution.pb.h"

namespace berth::cli {

class BlobProgressPrinter {
 public:
  enum class Mode { kLines, kJson, kTerminal };
  // kJson with --json, else kTerminal when stdout is a terminal, else kLines.
  static Mode ModeForStdout(bool json);
  // Prints to stdout in ModeForStdout(json), as wide as the terminal.
  explicit BlobProgressPrinter(bool json);
  // `width`: the terminal's columns (kTerminal's lines are cut to fit; 0: 80).
  BlobProgressPrinter(Mode mode, std::ostream& out, int width);

  // kLines: prints `blob` unless its digest's state is the one printed last. kJson: prints it.
  // kTerminal: records it and redraws (a state change at once, bytes at most 10 times a second).
  void Print(const ::berth::distribution::v1::BlobProgress& blob);
  // kTerminal: the final drawing and the summary ("7 blobs (5 done, 2 exists), 12.3MB
  // transferred in 3.1s"); the cursor is left below them. Call it also when the stream failed.
  // Other modes: nothing.
  void Finish();

 private:
  struct Blob {
    std::string digest;
    ::berth::distribution::v1::BlobProgress::State state = {};
    int64_t offset = 0;
    int64_t total = 0;
    bool transferred = false;  // was downloading or uploading
  };
  void Draw();
  std::string Line(const Blob& blob) const;

  const Mode mode_;
  std::ostream& out_;
  const int width_;
  std::map<std::string, ::berth::distribution::v1::BlobProgress::State> last_;  // kLines
  std::vector<Blob> blobs_;                   // kTerminal, in order of first appearance
  std::map<std::string, size_t> index_;       // digest -> blobs_ index
  size_t drawn_ = 0;                          // lines of the previous drawing
  absl::Time last_draw_ = absl::InfinitePast();
  const absl::Time start_ = absl::Now();
};

// Reads a progress stream (Pull, Push, Import: each message of type Message carries `blobs`)
// to its end, drawing every blob with a BlobProgressPrinter for `json`, and hands each message
// to `on_message` for what else it carries (the image). The caller then Finish()es the stream.
template <typename Message, typename Reader, typename OnMessage>
void ReadProgress(Reader& reader, bool json, OnMessage on_message) {
  BlobProgressPrinter printer(json);
  Message message;
  while (reader.Read(&message)) {
    for (const ::berth::distribution::v1::BlobProgress& blob : message.blobs()) {
      printer.Print(blob);
    }
    on_message(message);
  }
  printer.Finish();
}

void PrintImage(bool json, absl::string_view verb,
                const ::berth::distribution::v1::PulledImage& image);
// The same for any result naming a target: `{"<key>": name, "digest", "media_type", "size"}`
// with --json, else `VERB NAME DIGEST`.
void PrintTarget(bool json, absl::string_view verb, absl::string_view key, absl::string_view name,
                 const ::containerd::types::Descriptor& target);

}  // namespace berth::cli
