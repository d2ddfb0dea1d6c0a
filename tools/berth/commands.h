#pragma once

// The berth command tree. main.cc builds the root command, adds the global options and calls
// each Register* below; every command's body is a function returning absl::Status, run by a
// Runner once the whole command line is parsed.

#include "tools/berth/cli.h"

namespace CLI {
class App;
}

namespace berth::cli {

// `berth content ...`: ingest, ls, get, info, rm, label, active, abort.
void RegisterContentCommands(CLI::App& root, Runner& runner);
// `berth lease ...`: create, ls, rm.
void RegisterLeaseCommands(CLI::App& root, Runner& runner);
// `berth namespace ...` (alias `ns`): create, ls, rm.
void RegisterNamespaceCommands(CLI::App& root, Runner& runner);
// `berth snapshot ...` (alias `snapshots`): prepare, view, mounts, commit, rm, ls, usage, tree,
// apply.
void RegisterSnapshotCommands(CLI::App& root, Runner& runner);
// `berth images ...` (alias `image`): ls, rm, tag, inspect, on imaged's records.
void RegisterImageCommands(CLI::App& root, Runner& runner);
// `berth events [FILTER...] [--since SEQ|TIME]`: streams events from eventd.
void RegisterEventsCommand(CLI::App& root, Runner& runner);
// `berth pull REF [--platform P] [--no-unpack] [--insecure-registry HOST]...`: imaged's Pull.
void RegisterPullCommand(CLI::App& root, Runner& runner);
// `berth push NAME [REFERENCE]`, `berth login REGISTRY`, `berth logout REGISTRY`.
void RegisterRegistryCommands(CLI::App& root, Runner& runner);
// `berth import FILE|-` and `berth export FILE|- NAME...`: imaged's Import and Export.
void RegisterArchiveCommands(CLI::App& root, Runner& runner);
// `berth run`, `create`, `start`: containers and their tasks on execd.
void RegisterRunCommands(CLI::App& root, Runner& runner);
// `berth ps`, `exec`, `kill`, `stop`, `rm`, `logs`, `pause`, `unpause`, `top`, `wait`.
void RegisterContainerCommands(CLI::App& root, Runner& runner);
// `berth stats [ID...] [--no-stream]`: CPU, memory and pids from execd's Tasks.Metrics.
void RegisterStatsCommand(CLI::App& root, Runner& runner);
// `berth version`.
void RegisterVersionCommand(CLI::App& root, Runner& runner);

}  // namespace berth::cli
