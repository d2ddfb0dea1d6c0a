// eventd: serves the event bus over gRPC (DESIGN.md, Events): containerd's Events service
// (Publish, Forward, Subscribe; `ctr events` works against it) and berth.events.v1.Events
// (replay from a sequence or a time, then live). History is a NATS JetStream stream that eventd
// creates, or updates to the configured limits, at start. Flags and config in, objects wired,
// serve until SIGTERM.

#include <iostream>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "lib/base/logging.h"
#include "lib/config/config.h"
#include "lib/server/daemon.h"
#include "services/eventd/event_log.h"
#include "services/eventd/metered_log.h"
#include "services/eventd/events_service.h"

namespace {

int Run(int argc, char** argv) {
  // Before any thread starts (nats.c's), so every thread inherits the blocked mask.
  berth::server::Daemon::BlockTerminationSignals();
  // Debian's abseil is built without NDEBUG, so every absl::Mutex (gRPC's included) keeps a
  // lock graph for deadlock detection: measurable per event on the publish path.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  berth::config::DaemonConfig cfg("eventd", {});
  berth::eventd::StreamOptions stream;
  int64_t max_age_seconds = absl::ToInt64Seconds(stream.max_age);
  int64_t duplicate_window_seconds = absl::ToInt64Seconds(stream.duplicate_window);
  int64_t connect_timeout_seconds = 30;
  std::string storage = "file";
  cfg.AddOption("--stream-name", "stream_name", &stream.name,
                "the JetStream stream holding the history");
  cfg.AddOption("--stream-subjects", "stream_subjects", &stream.subjects,
                "the subjects the stream captures");
  cfg.AddOption("--stream-max-age", "stream_max_age", &max_age_seconds,
                "seconds an event is kept (0: no limit)");
  cfg.AddOption("--stream-max-bytes", "stream_max_bytes", &stream.max_bytes,
                "bytes of history kept, oldest dropped first (0: no limit)");
  cfg.AddOption("--stream-duplicate-window", "stream_duplicate_window",
                &duplicate_window_seconds,
                "seconds within which a re-sent event (same Nats-Msg-Id) is dropped");
  cfg.AddOption("--stream-storage", "stream_storage", &storage, "file or memory");
  cfg.AddOption("--nats-connect-timeout", "nats_connect_timeout", &connect_timeout_seconds,
                "seconds to wait at start for an unreachable NATS server");
  if (absl::Status st = cfg.Parse(argc, argv); !st.ok()) {
    std::cerr << "eventd: " << st.message() << "\n";
    return 2;
  }
  const berth::config::CommonOptions& options = cfg.options();
  if (max_age_seconds < 0 || duplicate_window_seconds <= 0 || connect_timeout_seconds < 0 ||
      (storage != "file" && storage != "memory")) {
    std::cerr << "eventd: stream_max_age must be >= 0, stream_duplicate_window > 0, "
                 "nats_connect_timeout >= 0 and stream_storage file or memory\n";
    return 2;
  }
  if (absl::Status st =
          berth::SetLogLevel(options.log_level == "trace" ? "debug" : options.log_level);
      !st.ok()) {
    std::cerr << "eventd: " << st.message() << "\n";
    return 2;
  }
  stream.max_age = absl::Seconds(max_age_seconds);
  stream.duplicate_window = absl::Seconds(duplicate_window_seconds);
  stream.memory_storage = storage == "memory";

  berth::eventd::JetStreamLogOptions log_options;
  log_options.url = options.nats_url;
  log_options.credentials = options.nats_credentials;
  log_options.tls = options.nats_tls;
  log_options.stream = stream;
  log_options.connect_timeout = absl::Seconds(connect_timeout_seconds);
  absl::StatusOr<std::unique_ptr<berth::eventd::JetStreamLog>> log =
      berth::eventd::JetStreamLog::Open(log_options);
  if (!log.ok()) {
    BERTH_LOG(Error) << "eventd: " << log.status().message();
    std::cerr << "eventd: " << log.status().message() << "\n";
    return 1;
  }

  berth::server::Daemon daemon(options);
  berth::eventd::MeteredEventLog metered(**log, daemon.metrics());
  berth::eventd::ContainerdEventsService containerd_events(metered, options.default_namespace);
  berth::eventd::BerthEventsService berth_events(metered, options.default_namespace);
  daemon.AddService(&containerd_events);
  daemon.AddService(&berth_events);
  daemon.AddPlugin({"io.containerd.grpc.v1", "events"});
  if (absl::Status st = daemon.Start(); !st.ok()) {
    BERTH_LOG(Error) << "eventd: " << st;
    return 1;
  }
  BERTH_LOG(Info) << "eventd serving on " << daemon.grpc_target() << ", NATS " << options.nats_url
                  << ", stream " << stream.name;
  // eventd is no use without its bus: Health says NOT_SERVING while NATS is unreachable (the
  // client library reconnects meanwhile), and berth_eventd_nats_connected says why.
  absl::Notification stopping;
  std::thread watcher([&] {
    bool was = true;
    metered.SetConnected(true);
    while (!stopping.WaitForNotificationWithTimeout(absl::Milliseconds(250))) {
      bool now = (*log)->connected();
      if (now != was) {
        daemon.SetServing(now);
        metered.SetConnected(now);
        BERTH_LOG(Info) << "eventd: health " << (now ? "SERVING (NATS is back)"
                                                      : "NOT_SERVING (NATS unreachable)");
        was = now;
      }
    }
  });
  daemon.Wait();
  stopping.Notify();
  watcher.join();
  BERTH_LOG(Info) << "eventd stopped";
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
