#include "services/imaged/pusher.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "lib/base/logging.h"
#include "lib/base/status_macros.h"
#include "lib/content/blob_stream.h"

namespace berth::imaged {
namespace {

using State = BlobEvent::State;
using images::Descriptor;

// Serialises the caller's callback: uploads report from several threads.
class PushEmitter {
 public:
  explicit PushEmitter(const BlobEventFn& fn) : fn_(fn) {}
  void Emit(const oci::Descriptor& desc, State state, int64_t offset) {
    if (!fn_) {
      return;
    }
    BlobEvent event{desc.digest, desc.media_type, offset, desc.size, state};
    absl::MutexLock lock(&mu_);
    fn_(event);
  }

 private:
  const BlobEventFn& fn_;
  absl::Mutex mu_;
};

// A document of the push, with its bytes from the content store.
struct Document {
  Descriptor desc;
  std::string raw;
};

// What one push sends, children first: blobs, then the index's manifests, then the root.
struct Plan {
  std::vector<Descriptor> blobs;  // configs and layers, each once
  std::vector<Document> manifests;
  Document root;
};

struct PushJob {
  content::ContentStore& content;
  images::RegistryClient& registry;
  const images::Reference& ref;
  const std::string& image;  // the record's name, for errors
  std::string own_repo;      // the record's repository when it is on ref's registry
  PushEmitter& emit;
  int64_t step;
};

absl::Status Missing(const PushJob& job, const Descriptor& desc, absl::string_view what) {
  return absl::FailedPreconditionError(
      absl::StrCat("image ", job.image, ": ", what, " ", desc.digest.ToString(),
                   " is not in the content store (pull the image again, or every platform of "
                   "it, before pushing)"));
}

absl::StatusOr<std::string> ReadDocument(const PushJob& job, const Context& ctx,
                                         const Descriptor& desc, absl::string_view what) {
  absl::StatusOr<std::string> raw = content::ReadBlob(job.content, ctx, desc.digest);
  if (absl::IsNotFound(raw.status())) {
    return Missing(job, desc, what);
  }
  return raw;
}

// Adds a manifest's config and layers to the plan, checking each is in the store.
absl::Status PlanManifest(const PushJob& job, const Context& ctx, const Document& doc,
                          Plan* plan, std::set<std::string>* seen) {
  BERTH_ASSIGN_OR_RETURN(images::Manifest manifest,
                         images::ParseManifest(doc.raw, doc.desc.media_type));
  std::vector<Descriptor> children = {manifest.config};
  children.insert(children.end(), manifest.layers.begin(), manifest.layers.end());
  for (const Descriptor& child : children) {
    absl::StatusOr<content::Info> info = job.content.GetInfo(ctx, child.digest);
    if (absl::IsNotFound(info.status())) {
      return Missing(job, child, &child == &children[0] ? "config" : "layer");
    }
    BERTH_RETURN_IF_ERROR(info.status());
    if (seen->insert(child.digest.ToString()).second) {
      plan->blobs.push_back(child);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Plan> MakePlan(const PushJob& job, const Context& ctx, const Descriptor& target) {
  Plan plan;
  std::set<std::string> seen;
  plan.root.desc = target;
  BERTH_ASSIGN_OR_RETURN(plan.root.raw, ReadDocument(job, ctx, target, "root document"));
  if (images::IsManifestType(target.media_type)) {
    BERTH_RETURN_IF_ERROR(PlanManifest(job, ctx, plan.root, &plan, &seen));
    return plan;
  }
  if (!images::IsIndexType(target.media_type)) {
    return absl::InvalidArgumentError(absl::StrCat("image ", job.image, ": media type \"",
                                                   target.media_type, "\" cannot be pushed"));
  }
  BERTH_ASSIGN_OR_RETURN(images::Index index, images::ParseIndex(plan.root.raw, target.media_type));
  for (const Descriptor& desc : index.manifests) {
    if (!images::IsManifestType(desc.media_type)) {
      return absl::InvalidArgumentError(absl::StrCat("image ", job.image, ": index entry ",
                                                     desc.digest.ToString(), " of type \"",
                                                     desc.media_type, "\" cannot be pushed"));
    }
    Document doc{desc, ""};
    BERTH_ASSIGN_OR_RETURN(doc.raw, ReadDocument(job, ctx, desc, "manifest"));
    BERTH_RETURN_IF_ERROR(PlanManifest(job, ctx, doc, &plan, &seen));
    plan.manifests.push_back(std::move(doc));
  }
  return plan;
}

// Where the registry may already hold `desc`: the first repository of ref's registry, other
// than ref's, that the blob's distribution-source label names, else the record's own.
std::string MountSource(const PushJob& job, const Context& ctx, const Descriptor& desc) {
  absl::StatusOr<content::Info> info = job.content.GetInfo(ctx, desc.digest);
  if (info.ok()) {
    auto it = info->labels.find(absl::StrCat(kDistributionSourceLabel, job.ref.domain));
    if (it != info->labels.end()) {
      for (absl::string_view repo : absl::StrSplit(it->second, ',', absl::SkipEmpty())) {
        if (repo != job.ref.path) {
          return std::string(repo);
        }
      }
    }
  }
  return job.own_repo != job.ref.path ? job.own_repo : std::string();
}

absl::Status PushBlob(const PushJob& job, const Context& ctx, const Descriptor& desc) {
  BERTH_ASSIGN_OR_RETURN(bool has, job.registry.HasBlob(ctx, job.ref, desc));
  if (has) {
    job.emit.Emit(desc, State::kExists, desc.size);
    return absl::OkStatus();
  }
  images::BlobUpload upload;
  upload.mount_from = MountSource(job, ctx, desc);
  upload.open = [&job, &ctx, &desc](int64_t offset)
      -> absl::StatusOr<std::unique_ptr<ByteSource>> {
    BERTH_ASSIGN_OR_RETURN(std::unique_ptr<content::BlobSource> source,
                           content::BlobSource::Open(job.content, ctx, desc.digest, desc.size));
    BERTH_RETURN_IF_ERROR(source->Skip(offset).status());
    return std::unique_ptr<ByteSource>(std::move(source));
  };
  int64_t reported = 0;
  upload.progress = [&job, &desc, &reported](int64_t sent) {
    if (sent - reported >= job.step && sent < desc.size) {
      reported = sent;
      job.emit.Emit(desc, State::kUploading, sent);
    }
  };
  job.emit.Emit(desc, State::kUploading, 0);
  BERTH_ASSIGN_OR_RETURN(images::BlobPushResult result,
                         job.registry.PushBlob(ctx, job.ref, desc, upload));
  job.emit.Emit(desc, result == images::BlobPushResult::kMounted ? State::kMounted : State::kDone,
                desc.size);
  return absl::OkStatus();
}

// Pushes `blobs` with at most `parallel` threads. The first failure cancels the rest and is
// returned.
absl::Status PushBlobs(const PushJob& job, const Context& parent,
                       const std::vector<Descriptor>& blobs, int parallel) {
  auto cancel = std::make_shared<Cancellation>([parent] { return !parent.Alive().ok(); });
  Context ctx = parent;
  ctx.cancellation = cancel;
  std::vector<absl::Status> results(blobs.size());
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i = next++; i < blobs.size(); i = next++) {
      if (cancel->IsCancelled()) {
        results[i] = absl::CancelledError("an earlier blob failed");
        continue;
      }
      results[i] = PushBlob(job, ctx, blobs[i]);
      if (!results[i].ok()) {
        cancel->Cancel();
      }
    }
  };
  std::vector<std::thread> pool;
  size_t threads = std::min(blobs.size(), static_cast<size_t>(std::max(parallel, 1)));
  for (size_t t = 0; t < threads; ++t) {
    pool.emplace_back(work);
  }
  for (std::thread& thread : pool) {
    thread.join();
  }
  BERTH_RETURN_IF_ERROR(parent.Alive());
  for (const absl::Status& result : results) {
    if (!result.ok() && result.code() != absl::StatusCode::kCancelled) {
      return result;
    }
  }
  for (const absl::Status& result : results) {
    BERTH_RETURN_IF_ERROR(result);
  }
  return absl::OkStatus();
}

// PUTs a document as `object` (a tag, or its digest) unless the repository has it there.
absl::Status PushDocument(const PushJob& job, const Context& ctx, const Document& doc,
                          const std::string& object) {
  images::Reference at = job.ref;
  at.tag = object == doc.desc.digest.ToString() ? std::string() : object;
  at.digest = at.tag.empty() ? doc.desc.digest : Digest();
  absl::StatusOr<Descriptor> there = job.registry.ResolveForPush(ctx, at);
  if (there.ok() && there->digest == doc.desc.digest) {
    job.emit.Emit(doc.desc, State::kExists, doc.desc.size);
    return absl::OkStatus();
  }
  if (!there.ok() && !absl::IsNotFound(there.status())) {
    return there.status();
  }
  job.emit.Emit(doc.desc, State::kUploading, 0);
  BERTH_RETURN_IF_ERROR(job.registry.PushManifest(ctx, job.ref, doc.desc, doc.raw, object));
  job.emit.Emit(doc.desc, State::kDone, doc.desc.size);
  return absl::OkStatus();
}

// Adds ref's repository to each blob's distribution-source label. Best effort: a failure only
// costs a later push its mount, so it is logged.
void LabelSources(const PushJob& job, const Context& ctx, const Plan& plan) {
  const std::string key = absl::StrCat(kDistributionSourceLabel, job.ref.domain);
  std::vector<Descriptor> all = plan.blobs;
  for (const Document& doc : plan.manifests) {
    all.push_back(doc.desc);
  }
  all.push_back(plan.root.desc);
  for (const Descriptor& desc : all) {
    absl::StatusOr<content::Info> info = job.content.GetInfo(ctx, desc.digest);
    if (!info.ok()) {
      BERTH_LOG(Warn) << "push " << job.image << ": labelling " << desc.digest.ToString() << ": "
                      << info.status();
      continue;
    }
    std::vector<std::string> repos = absl::StrSplit(info->labels[key], ',', absl::SkipEmpty());
    if (std::find(repos.begin(), repos.end(), job.ref.path) != repos.end()) {
      continue;
    }
    repos.push_back(job.ref.path);
    info->labels[key] = absl::StrJoin(repos, ",");
    absl::StatusOr<content::Info> updated =
        job.content.Update(ctx, *info, {absl::StrCat("labels.", key)});
    if (!updated.ok()) {
      BERTH_LOG(Warn) << "push " << job.image << ": labelling " << desc.digest.ToString() << ": "
                      << updated.status();
    }
  }
}

}  // namespace

Pusher::Pusher(content::ContentStore& content, images::ImageStore& images, PusherOptions options)
    : content_(content), images_(images), options_(options) {}

absl::StatusOr<Pusher::Result> Pusher::Push(const Context& ctx, images::RegistryClient& registry,
                                            const PushRequest& request,
                                            const BlobEventFn& progress) {
  BERTH_ASSIGN_OR_RETURN(images::Image image, images_.Get(ctx, request.name));
  BERTH_ASSIGN_OR_RETURN(
      images::Reference ref,
      images::Reference::Parse(request.reference.empty() ? request.name : request.reference));
  Descriptor target;
  static_cast<oci::Descriptor&>(target) = image.target;
  if (!ref.digest.IsEmpty() && ref.digest != target.digest) {
    return absl::InvalidArgumentError(absl::StrCat(
        "image ", image.name, " is ", target.digest.ToString(), ", not ", ref.String()));
  }
  PushEmitter emit(progress);
  PushJob job{content_, registry, ref, image.name, "", emit, options_.progress_step};
  if (absl::StatusOr<images::Reference> own = images::Reference::Parse(image.name);
      own.ok() && own->domain == ref.domain) {
    job.own_repo = own->path;
  }
  BERTH_ASSIGN_OR_RETURN(Plan plan, MakePlan(job, ctx, target));
  for (const Descriptor& blob : plan.blobs) {
    emit.Emit(blob, State::kWaiting, 0);
  }
  for (const Document& doc : plan.manifests) {
    emit.Emit(doc.desc, State::kWaiting, 0);
  }
  emit.Emit(target, State::kWaiting, 0);
  BERTH_RETURN_IF_ERROR(PushBlobs(job, ctx, plan.blobs, options_.max_parallel_uploads));
  for (const Document& doc : plan.manifests) {
    BERTH_RETURN_IF_ERROR(ctx.Alive());
    BERTH_RETURN_IF_ERROR(PushDocument(job, ctx, doc, doc.desc.digest.ToString()));
  }
  BERTH_RETURN_IF_ERROR(ctx.Alive());
  BERTH_RETURN_IF_ERROR(
      PushDocument(job, ctx, plan.root, ref.tag.empty() ? target.digest.ToString() : ref.tag));
  LabelSources(job, ctx, plan);
  return Result{ref.String(), target};
}

}  // namespace berth::imaged
