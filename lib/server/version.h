#pragma once

#include <string>

namespace berth::server {

// berth's release (the CMake PROJECT_VERSION, e.g. "0.1.0") and the git commit it was built
// from ("unknown" when the build tree was not a git checkout). What the Version service returns;
// daemons print them for --version.
std::string BerthVersion();
std::string BerthRevision();

}  // namespace berth::server
