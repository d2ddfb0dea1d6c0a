#include "services/imaged/puller.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <functional>
#include <memory>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "lib/base/logging.h"
#include "lib/base/status_macros.h"
#include "lib/content/blob_stream.h"

namespace berth::imaged {

namespace {

using images::Descriptor;
using images::RegistryClient;
using State = BlobEvent::State;

constexpr char kGcExpire[] = "containerd.io/gc.expire";
constexpr absl::Duration kLeaseExpiry = absl::Hours(1);

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
}

// Serialises the caller's callback: downloads report from several threads.
class Emitter {
 public:
  explicit Emitter(const BlobEventFn& fn) : fn_(fn) {}
  void Emit(const oci::Descriptor& desc, State state, int64_t offset) {
    if (!fn_) {
      return;
    }
    BlobEvent event;
    event.digest = desc.digest;
    event.media_type = desc.media_type;
    event.offset = offset;
    event.total = desc.size;
    event.state = state;
    absl::MutexLock lock(&mu_);
    fn_(event);
  }

 private:
  const BlobEventFn& fn_;
  absl::Mutex mu_;
};

// What one pull needs while it runs: its context (with the lease), the registry and reference.
struct PullJob {
  Context ctx;
  RegistryClient& registry;
  images::Reference ref;
  Emitter& emit;
  DownloadFlights& flights;
};

}  // namespace

int DefaultParallelDownloads() {
  int cpus = static_cast<int>(std::thread::hardware_concurrency());
  return std::clamp(2 * cpus, 4, 16);
}

Puller::Puller(content::ContentStore& content, leases::LeaseManager& leases,
               snapshots::Unpacker* unpacker, images::ImageStore& images, PullerOptions options)
    : ImageStores(content, leases, unpacker, images), options_(options) {}

namespace {

// Whether the store holds `digest` already (NotFound: no; other errors returned).
absl::StatusOr<bool> Has(content::ContentStore& content, const Context& ctx,
                         const Digest& digest) {
  absl::StatusOr<content::Info> info = content.GetInfo(ctx, digest);
  if (info.ok()) {
    return true;
  }
  if (info.status().code() == absl::StatusCode::kNotFound) {
    return false;
  }
  return info.status();
}

// Streams one blob from the registry into an ingest, resuming what an earlier attempt left.
// Reports kExists when the store had it, else kDownloading..kVerifying, and kDone unless
// `more_to_come` (the unpack reports it then).
absl::Status DownloadBlob(content::ContentStore& content, const PullJob& job,
                          const oci::Descriptor& desc, int64_t step, bool more_to_come) {
  // Another pull downloading this blob: wait for it, then find the blob there.
  BERTH_ASSIGN_OR_RETURN(
      std::unique_ptr<DownloadFlights::Hold> hold,
      job.flights.Acquire(job.ctx, absl::StrCat(job.ctx.ns, "/", desc.digest.ToString())));
  // A blob the store has already: OpenWriter says AlreadyExists (and adds it to the pull's
  // lease), so no Info round trip first.
  content::WriterOptions wopts;
  wopts.ref = absl::StrCat("pull-", desc.digest.ToString());
  wopts.total = desc.size;
  wopts.expected = desc.digest;
  absl::StatusOr<std::unique_ptr<content::Writer>> writer = content.OpenWriter(job.ctx, wopts);
  if (writer.status().code() == absl::StatusCode::kAlreadyExists) {
    job.emit.Emit(desc, State::kExists, desc.size);
    return absl::OkStatus();
  }
  BERTH_RETURN_IF_ERROR(writer.status());
  BERTH_ASSIGN_OR_RETURN(content::IngestStatus status, (*writer)->Status());
  int64_t offset = status.offset;
  if (offset > desc.size) {
    BERTH_RETURN_IF_ERROR((*writer)->Truncate(0));
    offset = 0;
  }
  content::WriterSink sink(**writer, offset, desc.size, desc.digest);
  // FetchBlob checks the digest while it streams (from offset 0; a resume is checked by
  // contentd at commit): hashing the bytes again here cost ~5% of a pull's CPU.
  sink.LeaveDigestToCaller();
  job.emit.Emit(desc, State::kDownloading, offset);
  if (offset < desc.size) {
    int64_t reported = offset;
    absl::Status fetched = job.registry.FetchBlob(
        job.ctx, job.ref, desc, offset, nullptr, [&](absl::string_view data) {
          BERTH_RETURN_IF_ERROR(sink.Write(data));
          if (sink.offset() - reported >= step) {
            reported = sink.offset();
            job.emit.Emit(desc, State::kDownloading, reported);
          }
          return absl::OkStatus();
        });
    if (!fetched.ok()) {
      (void)(*writer)->Close();  // the ingest stays for the next pull to resume
      return fetched;
    }
  }
  job.emit.Emit(desc, State::kVerifying, desc.size);
  absl::Status committed = sink.Commit({});
  if (!committed.ok() && committed.code() != absl::StatusCode::kAlreadyExists) {
    return committed;
  }
  if (!more_to_come) {
    job.emit.Emit(desc, State::kDone, desc.size);
  }
  return absl::OkStatus();
}

// Downloads `layers` with at most `parallel` threads; `stored(i)` is called (from the
// downloading thread) as soon as layers[i] is in the store, and its error fails the layer.
// `more_to_come(i)`: layer i's kDone is reported by someone else (its unpack). The first
// failure cancels the rest and is returned (the lowest layer's, when several fail).
absl::Status DownloadLayers(content::ContentStore& content, const PullJob& job,
                            const std::vector<oci::Descriptor>& layers, int parallel,
                            int64_t step, const std::function<bool(size_t)>& more_to_come,
                            const std::function<absl::Status(size_t)>& stored) {
  for (const oci::Descriptor& layer : layers) {
    job.emit.Emit(layer, State::kWaiting, 0);
  }
  const Context parent = job.ctx;
  auto cancel = std::make_shared<Cancellation>([parent] { return !parent.Alive().ok(); });
  PullJob worker_job{parent, job.registry, job.ref, job.emit, job.flights};
  worker_job.ctx.cancellation = cancel;
  std::vector<absl::Status> results(layers.size());
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i = next++; i < layers.size(); i = next++) {
      if (cancel->IsCancelled()) {
        results[i] = absl::CancelledError("an earlier layer failed");
        continue;
      }
      results[i] = DownloadBlob(content, worker_job, layers[i], step, more_to_come(i));
      if (results[i].ok()) {
        results[i] = stored(i);
      }
      if (!results[i].ok()) {
        cancel->Cancel();
      }
    }
  };
  size_t threads = std::min(layers.size(), static_cast<size_t>(std::max(parallel, 1)));
  std::vector<std::thread> pool;
  for (size_t t = 0; t < threads; ++t) {
    pool.emplace_back(work);
  }
  for (std::thread& thread : pool) {
    thread.join();
  }
  // The caller's own stop wins over the cancellations it caused.
  BERTH_RETURN_IF_ERROR(parent.Alive());
  for (size_t i = 0; i < layers.size(); ++i) {
    if (!results[i].ok() && results[i].code() != absl::StatusCode::kCancelled) {
      return results[i];
    }
  }
  for (const absl::Status& result : results) {
    BERTH_RETURN_IF_ERROR(result);
  }
  return absl::OkStatus();
}

// Downloads the layers and, when `unpacker` is set, unpacks them as they land: each layer is
// announced to an unpack session as soon as it is in the store, so its apply runs while the
// layers above it still download. Reports kUnpacking when a layer's apply starts and kDone
// when it is committed (a reused layer's kDone comes from its download). On any failure the
// session is dropped, which removes every snapshot it made, before this returns.
absl::Status DownloadAndUnpack(content::ContentStore& content, snapshots::Unpacker* unpacker,
                               const PullerOptions& options, const PullJob& job,
                               const std::vector<oci::Descriptor>& layers,
                               const std::vector<std::string>& chain) {
  if (unpacker == nullptr || layers.empty()) {
    return DownloadLayers(
        content, job, layers, options.max_parallel_downloads, options.progress_step,
        [](size_t) { return false; }, [](size_t) { return absl::OkStatus(); });
  }
  BERTH_ASSIGN_OR_RETURN(
      std::unique_ptr<snapshots::UnpackSession> session,
      unpacker->Start(job.ctx, layers, chain, {}, [&](const snapshots::UnpackProgress& p) {
        if (p.state == snapshots::UnpackProgress::State::kStarted) {
          job.emit.Emit(layers[p.layer], State::kUnpacking, layers[p.layer].size);
        } else if (p.state == snapshots::UnpackProgress::State::kApplied) {
          job.emit.Emit(layers[p.layer], State::kDone, layers[p.layer].size);
        }
      }));
  const size_t reused = session->reused();
  absl::Mutex session_mu;  // downloads announce from several threads
  const absl::Time start = absl::Now();
  BERTH_RETURN_IF_ERROR(DownloadLayers(
      content, job, layers, options.max_parallel_downloads, options.progress_step,
      [reused](size_t i) { return i >= reused; },
      [&](size_t i) {
        absl::MutexLock lock(&session_mu);
        return session->Ready(i);
      }));
  const absl::Time downloaded = absl::Now();
  BERTH_RETURN_IF_ERROR(session->Finish().status());
  // Where a pull's time goes: the unpack's tail is what the overlap did not hide.
  BERTH_LOG(Info) << "pull " << job.ref.String() << ": " << layers.size() << " layers ("
                  << reused << " reused) downloaded in " << (downloaded - start)
                  << ", unpacked " << (absl::Now() - downloaded) << " after the last one";
  return absl::OkStatus();
}

// Stores a document (or the config) whose bytes are in hand, with `labels`; a blob the store
// has already gets the labels merged. Reports kDone, or kExists.
absl::Status StoreDocument(content::ContentStore& content, const PullJob& job,
                           const oci::Descriptor& desc, absl::string_view raw,
                           const content::Labels& labels) {
  BERTH_ASSIGN_OR_RETURN(bool has, Has(content, job.ctx, desc.digest));
  if (has) {
    if (!labels.empty()) {
      content::Info info;
      info.digest = desc.digest;
      info.labels = labels;
      std::vector<std::string> paths;
      for (const auto& [key, value] : labels) {
        paths.push_back(absl::StrCat("labels.", key));
      }
      BERTH_RETURN_IF_ERROR(content.Update(job.ctx, info, paths).status());
    }
    job.emit.Emit(desc, State::kExists, desc.size);
    return absl::OkStatus();
  }
  BERTH_RETURN_IF_ERROR(content::WriteBlob(content, job.ctx,
                                           absl::StrCat("pull-", desc.digest.ToString()), raw,
                                           desc.digest, labels));
  job.emit.Emit(desc, State::kDone, desc.size);
  return absl::OkStatus();
}

// The config's bytes: from the store when it has them, else from the registry (checked).
absl::StatusOr<std::string> FetchConfig(content::ContentStore& content, const PullJob& job,
                                        const oci::Descriptor& desc) {
  BERTH_ASSIGN_OR_RETURN(bool has, Has(content, job.ctx, desc.digest));
  if (has) {
    return content::ReadBlob(content, job.ctx, desc.digest);
  }
  job.emit.Emit(desc, State::kDownloading, 0);
  StringSink sink;
  BERTH_RETURN_IF_ERROR(job.registry.FetchBlob(job.ctx, job.ref, desc, &sink));
  return sink.data();
}

// Fetches one manifest's config and layers into the store, then stores the config and the
// manifest (labelled with its config and layers). The `primary` manifest (the platform's) has
// its config checked against its layers and, when `unpacker` is set, is unpacked into the chain
// of its diff ids, its config labelled with the chain's top. Another (--all-platforms) is
// stored only.
absl::Status PullManifest(content::ContentStore& content, snapshots::Unpacker* unpacker,
                          const PullerOptions& options, const PullJob& job,
                          const PullRequest& request, const Descriptor& manifest_desc,
                          const RegistryClient::Document& manifest_doc, bool primary) {
  const std::string name = job.ref.String();
  const images::Manifest& manifest = *manifest_doc.manifest;
  std::vector<oci::Descriptor> layers(manifest.layers.begin(), manifest.layers.end());
  BERTH_ASSIGN_OR_RETURN(std::string config_raw, FetchConfig(content, job, manifest.config));
  content::Labels config_labels;
  if (primary) {
    BERTH_ASSIGN_OR_RETURN(images::ImageConfig config, images::ParseImageConfig(config_raw));
    if (config.diff_ids.size() != manifest.layers.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, ": the config names ", config.diff_ids.size(), " diff ids for ",
          manifest.layers.size(), " layers"));
    }
    const std::vector<std::string> chain = images::ChainIds(config.diff_ids);
    BERTH_RETURN_IF_ERROR(DownloadAndUnpack(content, unpacker, options, job, layers, chain));
    if (unpacker != nullptr && !layers.empty()) {
      config_labels[absl::StrCat("containerd.io/gc.ref.snapshot.", request.snapshotter)] =
          chain.back();
    }
  } else {
    BERTH_RETURN_IF_ERROR(DownloadAndUnpack(content, nullptr, options, job, layers, {}));
  }
  BERTH_RETURN_IF_ERROR(StoreDocument(content, job, manifest.config, config_raw, config_labels));

  // The manifest names its config and layers. No gc.root: the record's lease holds the root
  // (image_holds.h), so a pull that dies before its record leaves nothing rooted.
  content::Labels manifest_labels = {
      {"containerd.io/gc.ref.content.config", manifest.config.digest.ToString()}};
  for (size_t i = 0; i < layers.size(); ++i) {
    manifest_labels[absl::StrCat("containerd.io/gc.ref.content.l.", i)] =
        layers[i].digest.ToString();
  }
  return StoreDocument(content, job, manifest_desc, manifest_doc.raw, manifest_labels);
}

// The manifest document `desc` names; InvalidArgument when it is not an image manifest.
absl::StatusOr<RegistryClient::Document> FetchImageManifest(const PullJob& job,
                                                            const Descriptor& desc) {
  BERTH_ASSIGN_OR_RETURN(RegistryClient::Document doc,
                         job.registry.FetchManifest(job.ctx, job.ref, desc));
  if (!doc.manifest.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(job.ref.String(), ": index entry ",
                                                   desc.digest.ToString(),
                                                   " is not an image manifest"));
  }
  return doc;
}

// The pull, under the lease in job.ctx.
absl::StatusOr<images::Image> PullLeased(content::ContentStore& content,
                                         snapshots::Unpacker* unpacker,
                                         images::ImageStore& image_store,
                                         const PullerOptions& options, const PullJob& job,
                                         const PullRequest& request,
                                         const images::Platform& want) {
  const std::string name = job.ref.String();
  snapshots::Unpacker* const unpack_with = request.unpack ? unpacker : nullptr;
  BERTH_ASSIGN_OR_RETURN(Descriptor root, job.registry.Resolve(job.ctx, job.ref));
  BERTH_ASSIGN_OR_RETURN(RegistryClient::Document root_doc,
                         job.registry.FetchManifest(job.ctx, job.ref, root));
  if (root_doc.index.has_value()) {
    // The platform's manifest (unpacked when asked); with all_platforms every other one too,
    // fetched but not unpacked, as containerd's `ctr pull --all-platforms`. All platforms
    // without unpacking need not find the platform in the index.
    absl::StatusOr<Descriptor> chosen = images::ChooseManifest(*root_doc.index, want, name);
    if (!chosen.ok() && !(request.all_platforms && unpack_with == nullptr)) {
      return chosen.status();
    }
    if (chosen.ok()) {
      BERTH_ASSIGN_OR_RETURN(RegistryClient::Document doc, FetchImageManifest(job, *chosen));
      BERTH_RETURN_IF_ERROR(
          PullManifest(content, unpack_with, options, job, request, *chosen, doc, true));
    }
    for (const Descriptor& entry : root_doc.index->manifests) {
      if (!request.all_platforms || (chosen.ok() && entry.digest == chosen->digest)) {
        continue;
      }
      BERTH_ASSIGN_OR_RETURN(RegistryClient::Document doc, FetchImageManifest(job, entry));
      BERTH_RETURN_IF_ERROR(
          PullManifest(content, nullptr, options, job, request, entry, doc, false));
    }
    content::Labels index_labels;
    for (size_t i = 0; i < root_doc.index->manifests.size(); ++i) {
      index_labels[absl::StrCat("containerd.io/gc.ref.content.m.", i)] =
          root_doc.index->manifests[i].digest.ToString();
    }
    BERTH_RETURN_IF_ERROR(StoreDocument(content, job, root, root_doc.raw, index_labels));
  } else if (root_doc.manifest.has_value()) {
    BERTH_RETURN_IF_ERROR(
        PullManifest(content, unpack_with, options, job, request, root, root_doc, true));
  } else {
    return absl::InvalidArgumentError(absl::StrCat(name, ": not an image"));
  }

  images::Image image;
  image.name = name;
  image.target = root;
  absl::StatusOr<images::Image> existing = image_store.Get(job.ctx, name);
  if (existing.ok()) {
    return image_store.Update(job.ctx, image, {"target"});
  }
  if (existing.status().code() != absl::StatusCode::kNotFound) {
    return existing.status();
  }
  absl::StatusOr<images::Image> created = image_store.Create(job.ctx, image);
  if (created.status().code() == absl::StatusCode::kAlreadyExists) {
    return image_store.Update(job.ctx, image, {"target"});  // another pull of the same name won
  }
  return created;
}

}  // namespace

absl::StatusOr<images::Image> Puller::Pull(const Context& caller, RegistryClient& registry,
                                           const PullRequest& request,
                                           const BlobEventFn& progress) {
  BERTH_ASSIGN_OR_RETURN(images::Reference ref, images::Reference::Parse(request.reference));
  images::Platform want = images::HostPlatform();
  if (!request.platform.empty()) {
    BERTH_ASSIGN_OR_RETURN(want, images::ParsePlatform(request.platform));
  }
  if (request.unpack && unpacker_ == nullptr) {
    return absl::FailedPreconditionError("cannot unpack: imaged has no snapshotd");
  }
  Context ctx = caller;
  ctx.lease.clear();
  BERTH_ASSIGN_OR_RETURN(
      leases::Lease lease,
      leases_.Create(ctx, "",
                     {{kGcExpire, Rfc3339(absl::Now() + kLeaseExpiry)},
                      {kPullLeaseLabel, ref.String()}}));
  ctx.lease = lease.id;
  Emitter emit(progress);
  PullJob job{ctx, registry, ref, emit, flights_};
  absl::StatusOr<images::Image> image =
      PullLeased(content_, unpacker_, images_, options_, job, request, want);

  // Deleted even when the caller left: a detached context with its own deadline.
  Context cleanup;
  cleanup.ns = ctx.ns;
  cleanup.deadline = absl::Now() + absl::Seconds(30);
  if (absl::Status deleted = leases_.Delete(cleanup, lease.id, false); !deleted.ok()) {
    BERTH_LOG(Warn) << "pull " << ref.String() << ": deleting lease " << lease.id << ": "
                       << deleted << " (it expires by itself)";
  }
  return image;
}

absl::StatusOr<std::vector<std::string>> ReleasePullLeases(
    leases::LeaseManager& leases, content::ContentStore& content,
    const std::vector<std::string>& namespaces) {
  std::vector<std::string> released;
  for (const std::string& ns : namespaces) {
    Context ctx;
    ctx.ns = ns;
    ctx.deadline = absl::Now() + absl::Seconds(30);
    BERTH_ASSIGN_OR_RETURN(std::vector<leases::Lease> list,
                           leases.List(ctx, {absl::StrCat("labels.\"", kPullLeaseLabel, "\"")}));
    for (const leases::Lease& lease : list) {
      BERTH_ASSIGN_OR_RETURN(std::vector<leases::Resource> held,
                             leases.ListResources(ctx, lease.id));
      std::vector<std::unique_ptr<content::Writer>> kept;  // closed (not aborted) when they go
      for (const leases::Resource& resource : held) {
        if (resource.type == "ingests") {
          content::WriterOptions open;
          open.ref = resource.id;
          if (absl::StatusOr<std::unique_ptr<content::Writer>> writer =
                  content.OpenWriter(ctx, open);
              writer.ok()) {
            kept.push_back(*std::move(writer));
          }
        }
      }
      absl::Status deleted = leases.Delete(ctx, lease.id, false);
      if (!deleted.ok() && !absl::IsNotFound(deleted)) {
        return deleted;
      }
      released.push_back(absl::StrCat(ns, "/", lease.id));
    }
  }
  return released;
}

}  // namespace berth::imaged
