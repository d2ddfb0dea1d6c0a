#include "lib/server/version.h"

// Both come from lib/server/CMakeLists.txt, set on this file only so a new commit rebuilds one
// object.
#ifndef BERTH_VERSION
#error "BERTH_VERSION must be defined by the build"
#endif
#ifndef BERTH_REVISION
#define BERTH_REVISION "unknown"
#endif

namespace berth::server {

std::string BerthVersion() { return BERTH_VERSION; }
std::string BerthRevision() { return BERTH_REVISION; }

}  // namespace berth::server
