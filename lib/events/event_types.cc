#include "lib/events/event_types.h"

#include "containerd/events/container.pb.h"
#include "containerd/events/content.pb.h"
#include "containerd/events/image.pb.h"
#include "containerd/events/namespace.pb.h"
#include "containerd/events/snapshot.pb.h"
#include "containerd/events/task.pb.h"

namespace berth::events {

void LinkEventTypes() {
  // One descriptor per file registers the whole file.
  static const void* const linked[] = {
      ::containerd::events::ContainerCreate::descriptor(),
      ::containerd::events::ContentDelete::descriptor(),
      ::containerd::services::images::v1::ImageCreate::descriptor(),
      ::containerd::events::NamespaceCreate::descriptor(),
      ::containerd::events::SnapshotPrepare::descriptor(),
      ::containerd::events::TaskExit::descriptor(),
  };
  (void)linked;
}

}  // namespace berth::events
