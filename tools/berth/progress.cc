#include "tools/berth/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "tools/berth/output.h"

namespace berth::cli {

namespace pb = ::berth::distribution::v1;

namespace {

constexpr int kBarWidth = 30;
constexpr absl::Duration kRedrawInterval = absl::Milliseconds(100);

std::string StateName(pb::BlobProgress::State state) {
  std::string name = pb::BlobProgress::State_Name(state);
  for (char& c : name) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return name;
}

bool Moving(pb::BlobProgress::State state) {
  return state == pb::BlobProgress::DOWNLOADING || state == pb::BlobProgress::UPLOADING;
}

// "[=========>          ]" for `done` of `total`.
std::string Bar(int64_t done, int64_t total) {
  int filled = total > 0 ? static_cast<int>(std::min<int64_t>(done, total) * kBarWidth / total)
                         : 0;
  std::string bar(static_cast<size_t>(filled), '=');
  if (filled < kBarWidth) {
    bar += '>';
  }
  bar.resize(kBarWidth, ' ');
  return absl::StrCat("[", bar, "]");
}

// "3f1a2b4c5d6e" of "sha256:3f1a2b4c5d6e...", as docker names layers.
absl::string_view ShortDigest(absl::string_view digest) {
  size_t colon = digest.find(':');
  return digest.substr(colon == absl::string_view::npos ? 0 : colon + 1, 12);
}

int TerminalWidth(int fd) {
  winsize size{};
  if (::ioctl(fd, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) {
    return size.ws_col;
  }
  return 0;
}

}  // namespace

BlobProgressPrinter::Mode BlobProgressPrinter::ModeForStdout(bool json) {
  if (json) {
    return Mode::kJson;
  }
  return ::isatty(STDOUT_FILENO) == 1 ? Mode::kTerminal : Mode::kLines;
}

BlobProgressPrinter::BlobProgressPrinter(bool json)
    : BlobProgressPrinter(ModeForStdout(json), std::cout, TerminalWidth(STDOUT_FILENO)) {}

BlobProgressPrinter::BlobProgressPrinter(Mode mode, std::ostream& out, int width)
    : mode_(mode), out_(out), width_(width > 0 ? width : 80) {}

void BlobProgressPrinter::Print(const pb::BlobProgress& blob) {
  switch (mode_) {
    case Mode::kJson:
      out_ << nlohmann::json{{"digest", blob.digest()},
                             {"media_type", blob.media_type()},
                             {"offset", blob.offset()},
                             {"total", blob.total()},
                             {"state", StateName(blob.state())}}
                  .dump()
           << std::endl;
      return;
    case Mode::kLines: {
      auto [it, inserted] = last_.emplace(blob.digest(), blob.state());
      if (!inserted && it->second == blob.state()) {
        return;
      }
      it->second = blob.state();
      out_ << blob.digest() << ' ' << StateName(blob.state()) << ' ' << HumanSize(blob.total())
           << std::endl;
      return;
    }
    case Mode::kTerminal:
      break;
  }
  auto [it, inserted] = index_.emplace(blob.digest(), blobs_.size());
  if (inserted) {
    blobs_.push_back(Blob{blob.digest()});
  }
  Blob& entry = blobs_[it->second];
  const bool changed = inserted || entry.state != blob.state();
  entry.state = blob.state();
  entry.offset = blob.offset();
  entry.total = blob.total();
  entry.transferred = entry.transferred || Moving(blob.state());
  if (changed || absl::Now() - last_draw_ >= kRedrawInterval) {
    Draw();
  }
}

std::string BlobProgressPrinter::Line(const Blob& blob) const {
  std::string line = absl::StrFormat("%-12s: %-11s", ShortDigest(blob.digest),
                                     StateName(blob.state));
  if (Moving(blob.state)) {
    absl::StrAppend(&line, " ", Bar(blob.offset, blob.total), " ", HumanSize(blob.offset), "/",
                    HumanSize(blob.total));
  } else {
    absl::StrAppend(&line, " ", HumanSize(blob.total));
  }
  // Never wider than the terminal: a wrapped line would break the cursor arithmetic.
  line.resize(std::min(line.size(), static_cast<size_t>(std::max(width_ - 1, 1))));
  return line;
}

void BlobProgressPrinter::Draw() {
  std::string frame;
  if (drawn_ > 0) {
    absl::StrAppend(&frame, "\x1b[", drawn_, "A");  // back to the drawing's first line
  }
  for (const Blob& blob : blobs_) {
    absl::StrAppend(&frame, "\r\x1b[2K", Line(blob), "\n");
  }
  drawn_ = blobs_.size();
  last_draw_ = absl::Now();
  out_ << frame << std::flush;
}

void BlobProgressPrinter::Finish() {
  if (mode_ != Mode::kTerminal) {
    return;
  }
  Draw();
  std::map<std::string, int> by_state;
  int64_t bytes = 0;
  for (const Blob& blob : blobs_) {
    ++by_state[StateName(blob.state)];
    bytes += blob.transferred ? blob.total : 0;
  }
  std::vector<std::string> counts;
  for (const auto& [state, count] : by_state) {
    counts.push_back(absl::StrCat(count, " ", state));
  }
  out_ << blobs_.size() << (blobs_.size() == 1 ? " blob" : " blobs");
  if (!counts.empty()) {
    out_ << " (" << absl::StrJoin(counts, ", ") << ")";
  }
  out_ << ", " << HumanSize(bytes) << " transferred in "
       << absl::StrFormat("%.1fs", absl::ToDoubleSeconds(absl::Now() - start_)) << std::endl;
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
