#include "services/execd/tasks_service.h"

#include <utility>

#include "lib/base/grpc_status.h"
#include "lib/base/status_macros.h"
#include "lib/server/request_context.h"
#include "lib/snapshots/proto_convert.h"
#include "services/execd/task_metrics.h"

namespace berth::execd {
namespace {

namespace v1 = ::containerd::services::tasks::v1;

// Runs `body` with the call's Context; converts its status once.
template <typename Body>
grpc::Status Serve(grpc::ServerContext* call, const std::string& default_ns, Body body) {
  absl::Status status = [&]() -> absl::Status {
    BERTH_ASSIGN_OR_RETURN(Context ctx, server::ContextFrom(*call, default_ns));
    return body(ctx);
  }();
  return ToGrpcStatus(status);
}

void FillDeleted(const std::string& id, const Deleted& d, v1::DeleteResponse* response) {
  response->set_id(id);
  response->set_pid(static_cast<uint32_t>(d.pid));
  response->set_exit_status(d.exit.status);
  SetTimestamp(response->mutable_exited_at(), d.exit.exited_at);
}

}  // namespace

grpc::Status TasksService::Create(grpc::ServerContext* c, const v1::CreateTaskRequest* request,
                                  v1::CreateTaskResponse* response) {
  return Serve(c, default_namespace_, [&](const Context& ctx) -> absl::Status {
    if (request->has_checkpoint() && !request->checkpoint().digest().empty()) {
      return absl::UnimplementedError("execd does not restore checkpoints (not implemented)");
    }
    CreateTask create;
    create.id = request->container_id();
    for (const auto& m : request->rootfs()) {
      create.rootfs.push_back(snapshots::MountFromProto(m));
    }
    create.stdin_path = request->stdin();
    create.stdout_path = request->stdout();
    create.stderr_path = request->stderr();
    create.terminal = request->terminal();
    create.runtime_path = request->runtime_path();
    BERTH_ASSIGN_OR_RETURN(pid_t pid, tasks_.Create(ctx, create));
    response->set_container_id(request->container_id());
    response->set_pid(static_cast<uint32_t>(pid));
    return absl::OkStatus();
  });
}

grpc::Status TasksService::Start(grpc::ServerContext* c, const v1::StartRequest* request,
                                 v1::StartResponse* response) {
  return Serve(c, default_namespace_, [&](const Context& ctx) -> absl::Status {
    BERTH_ASSIGN_OR_RETURN(pid_t pid,
                           tasks_.Start(ctx, request->container_id(), request->exec_id()));
    response->set_pid(static_cast<uint32_t>(pid));
    return absl::OkStatus();
  });
}

grpc::Status TasksService::Delete(grpc::ServerContext* c, const v1::DeleteTaskRequest* request,
                                  v1::DeleteResponse* response) {
  return Serve(c, default_namespace_, [&](const Context& ctx) -> absl::Status {
    BERTH_ASSIGN_OR_RETURN(Deleted d, tasks_.Delete(ctx, request->container_id()));
    FillDeleted(request->container_id(), d, response);
    return absl::OkStatus();
  });
}

grpc::Status TasksService::DeleteProcess(grpc::ServerContext* c,
                                         const v1::DeleteProcessRequest* request,
                                         v1::DeleteResponse* response) {
  return Serve(c, default_namespace_, [&](const Context& ctx) -> absl::Status {
    BERTH_ASSIGN_OR_RETURN(
        Deleted d, tasks_.DeleteProcess(ctx, request->container_id(), request->exec_id()));
    FillDeleted(request->exec_id(), d, response);
    return absl::OkStatus();
  });
}

grpc::Status TasksService::Get(grpc::ServerContext* c, const v1::GetRequest* request,
                               v1::GetResponse* response) {
  return Serve(c, default_namespace_, [&](const Context& ctx) -> absl::Status {
    BERTH_ASSIGN_OR_RETURN(*response->mutable_process(),
                           tasks_.Get(ctx, request->container_id(), request->exec_id()));
    return absl::OkStatus();
  });
}

grpc::Status TasksService::List(grpc::ServerContext* c, const v1::ListTasksRequest* request,
                                v1::ListTasksResponse* response) {
  return Serve(c, default_namespace_, [&](const Context& ctx) -> absl::Status {
    BERTH_ASSIGN_OR_RETURN(std::vector<ProcessProto> list, tasks_.List(ctx));
    for (ProcessProto& p : list) {
      *response->add_tasks() = std::move(p);
    }
    return absl::OkStatus();
  });
}

grpc::Status TasksService::Kill(grpc::ServerContext* c, const v1::KillRequest* request,
                                Empty* response) {
  return Serve(c, default_namespace_, [&](const Context& ctx) {
    return tasks_.Kill(ctx, request->container_id(), request->exec_id(),
                       static_cast<int>(request->signal()), request->all());
  });
}

grpc::Status TasksService::Exec(grpc::ServerContext* c, const v1::ExecProcessRequest* request,
                                Empty* response) {
  return Serve(c, default_namespace_, [&](const Context& ctx) {
    ExecProcess exec;
    exec.id = request->container_id();
    exec.exec_id = request->exec_id();
    exec.spec_json = request->spec().value();
    exec.stdin_path = request->stdin();
    exec.stdout_path = request->stdout();
    exec.stderr_path = request->stderr();
    exec.terminal = request->terminal();
    return tasks_.Exec(ctx, exec);
  });
}

grpc::Status TasksService::ResizePty(grpc::ServerContext* c, const v1::ResizePtyRequest* request,
                                     Empty* response) {
  return Serve(c, default_namespace_, [&](const Context& ctx) {
    return tasks_.ResizePty(ctx, request->container_id(), request->exec_id(), request->width(),
                            request->height());
  });
}

grpc::Status TasksService::CloseIO(grpc::ServerContext* c, const v1::CloseIORequest* request,
                                   Empty* response) {
  return Serve(c, default_namespace_, [&](const Context& ctx) {
    return request->stdin() ? tasks_.CloseIO(ctx, request->container_id(), request->exec_id())
                            : absl::OkStatus();
  });
}

grpc::Status TasksService::Pause(grpc::ServerContext* c, const v1::PauseTaskRequest* request,
                                 Empty* response) {
  return Serve(c, default_namespace_,
               [&](const Context& ctx) { return tasks_.Pause(ctx, request->container_id()); });
}

grpc::Status TasksService::Resume(grpc::ServerContext* c, const v1::ResumeTaskRequest* request,
                                  Empty* response) {
  return Serve(c, default_namespace_,
               [&](const Context& ctx) { return tasks_.Resume(ctx, request->container_id()); });
}

grpc::Status TasksService::ListPids(grpc::ServerContext* c, const v1::ListPidsRequest* request,
                                    v1::ListPidsResponse* response) {
  return Serve(c, default_namespace_, [&](const Context& ctx) -> absl::Status {
    BERTH_ASSIGN_OR_RETURN(std::vector<uint32_t> pids,
                           tasks_.ListPids(ctx, request->container_id()));
    for (uint32_t pid : pids) {
      response->add_processes()->set_pid(pid);
    }
    return absl::OkStatus();
  });
}

grpc::Status TasksService::Checkpoint(grpc::ServerContext* c,
                                      const v1::CheckpointTaskRequest* request,
                                      v1::CheckpointTaskResponse* response) {
  return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                      "execd does not checkpoint tasks (not implemented)");
}

grpc::Status TasksService::Update(grpc::ServerContext* c, const v1::UpdateTaskRequest* request,
                                  Empty* response) {
  return Serve(c, default_namespace_, [&](const Context& ctx) {
    return tasks_.Update(ctx, request->container_id(), request->resources().value());
  });
}

grpc::Status TasksService::Metrics(grpc::ServerContext* c, const v1::MetricsRequest* request,
                                   v1::MetricsResponse* response) {
  return Serve(c, default_namespace_, [&](const Context& ctx) {
    return CollectMetrics(ctx, tasks_, {request->filters().begin(), request->filters().end()},
                          response);
  });
}

grpc::Status TasksService::Wait(grpc::ServerContext* c, const v1::WaitRequest* request,
                                v1::WaitResponse* response) {
  return Serve(c, default_namespace_, [&](const Context& ctx) -> absl::Status {
    BERTH_ASSIGN_OR_RETURN(ProcessExit exit,
                           tasks_.Wait(ctx, request->container_id(), request->exec_id()));
    response->set_exit_status(exit.status);
    SetTimestamp(response->mutable_exited_at(), exit.exited_at);
    return absl::OkStatus();
  });
}

}  // namespace berth::execd
