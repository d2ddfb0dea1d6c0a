#pragma once

// The events publisher of a daemon that publishes lifecycle events (contentd, snapshotd,
// imaged, ...): a NatsPublisher whose outbox is <root>/events-outbox.db, drained to the
// configured NATS server with the configured credentials and TLS, its metrics on the daemon's
// registry labelled daemon=<name>. Creates the root first (0700, missing parents 0711, as
// Daemon::Start makes it), since the outbox opens in it before the daemon starts.

#include <memory>

#include "absl/status/statusor.h"
#include "lib/config/config.h"
#include "lib/events/nats_publisher.h"
#include "lib/server/daemon.h"

namespace berth::server {

absl::StatusOr<std::unique_ptr<events::NatsPublisher>> OpenDaemonPublisher(
    const config::CommonOptions& options, Daemon& daemon);

}  // namespace berth::server
