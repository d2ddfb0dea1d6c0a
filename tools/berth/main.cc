// berth: the command-line client for the berth daemons. Parses the command line and runs one
// command; the commands live in *_commands.cc.
//
// Exit status: 0 on success, 1 when a command fails, 2 for a usage error. Errors are one line on
// stderr: "berth: <message>".

#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/strings/str_join.h"
#include "tools/berth/cli.h"
#include "tools/berth/commands.h"

int main(int argc, char** argv) {
  using berth::cli::GlobalOptions;
  using berth::cli::Runner;

  CLI::App app("berth: drive the berth container runtime daemons", "berth");
  app.set_version_flag("--version", std::string(BERTH_VERSION));
  app.require_subcommand(0, 1);  // a missing command is reported below, with the choices
  app.fallthrough();             // global options are accepted after the subcommand too

  GlobalOptions options;
  berth::cli::AddGlobalOptions(app, options);
  Runner runner(options);
  berth::cli::RegisterContentCommands(app, runner);
  berth::cli::RegisterLeaseCommands(app, runner);
  berth::cli::RegisterNamespaceCommands(app, runner);
  berth::cli::RegisterSnapshotCommands(app, runner);
  berth::cli::RegisterImageCommands(app, runner);
  berth::cli::RegisterEventsCommand(app, runner);
  berth::cli::RegisterPullCommand(app, runner);
  berth::cli::RegisterRegistryCommands(app, runner);
  berth::cli::RegisterArchiveCommands(app, runner);
  berth::cli::RegisterVersionCommand(app, runner);
  berth::cli::RegisterRunCommands(app, runner);
  berth::cli::RegisterContainerCommands(app, runner);
  berth::cli::RegisterStatsCommand(app, runner);

  std::vector<std::string> args(argv + 1, argv + argc);
  berth::cli::SplitTrailingCommand(app, &args);
  std::reverse(args.begin(), args.end());  // CLI11 takes them last first
  try {
    app.parse(args);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "berth: " << e.what() << "\nRun 'berth --help' for usage.\n";
    return 2;
  }
  // The command named last: a group (berth content) without one of its commands runs nothing.
  CLI::App* command = &app;
  while (!command->get_subcommands().empty()) {
    command = command->get_subcommands().front();
  }
  std::vector<CLI::App*> choices = command->get_subcommands([](CLI::App*) { return true; });
  if (!choices.empty()) {
    std::vector<std::string> names;
    for (const CLI::App* choice : choices) {
      names.push_back(choice->get_name());
    }
    std::string path = command == &app ? "berth" : "berth " + command->get_name();
    std::cerr << "berth: missing command after '" << path
              << "' (one of: " << absl::StrJoin(names, ", ") << ")\nRun '" << path
              << " --help' for usage.\n";
    return 2;
  }
  const absl::Status& status = runner.status();
  if (!status.ok()) {
    std::cout.flush();
    std::cerr << "berth: " << status.message() << '\n';
    return berth::cli::IsUsageError(status) ? 2 : 1;
  }
  std::cout.flush();
  return std::cout.good() ? runner.exit_code() : 1;
}
