#pragma once

// execd's containerd.services.tasks.v1.Tasks server: each handler reads the request's context
// (namespace from `containerd-namespace`, else the default), calls TaskManager and converts
// the result once. Metrics reads the tasks' cgroups (task_metrics.h). Checkpoint answers
// Unimplemented, saying so. Thread-safe.

#include <string>

#include "containerd/services/tasks/v1/tasks.grpc.pb.h"
#include "services/execd/task_manager.h"

namespace berth::execd {

class TasksService final : public ::containerd::services::tasks::v1::Tasks::Service {
 public:
  // `tasks` must outlive the service.
  TasksService(TaskManager& tasks, std::string default_namespace)
      : tasks_(tasks), default_namespace_(std::move(default_namespace)) {}

  using Empty = google::protobuf::Empty;
  grpc::Status Create(grpc::ServerContext* c,
                      const ::containerd::services::tasks::v1::CreateTaskRequest* request,
                      ::containerd::services::tasks::v1::CreateTaskResponse* response) override;
  grpc::Status Start(grpc::ServerContext* c,
                     const ::containerd::services::tasks::v1::StartRequest* request,
                     ::containerd::services::tasks::v1::StartResponse* response) override;
  grpc::Status Delete(grpc::ServerContext* c,
                      const ::containerd::services::tasks::v1::DeleteTaskRequest* request,
                      ::containerd::services::tasks::v1::DeleteResponse* response) override;
  grpc::Status DeleteProcess(grpc::ServerContext* c,
                             const ::containerd::services::tasks::v1::DeleteProcessRequest* request,
                             ::containerd::services::tasks::v1::DeleteResponse* response) override;
  grpc::Status Get(grpc::ServerContext* c,
                   const ::containerd::services::tasks::v1::GetRequest* request,
                   ::containerd::services::tasks::v1::GetResponse* response) override;
  grpc::Status List(grpc::ServerContext* c,
                    const ::containerd::services::tasks::v1::ListTasksRequest* request,
                    ::containerd::services::tasks::v1::ListTasksResponse* response) override;
  grpc::Status Kill(grpc::ServerContext* c,
                    const ::containerd::services::tasks::v1::KillRequest* request,
                    Empty* response) override;
  grpc::Status Exec(grpc::ServerContext* c,
                    const ::containerd::services::tasks::v1::ExecProcessRequest* request,
                    Empty* response) override;
  grpc::Status ResizePty(grpc::ServerContext* c,
                         const ::containerd::services::tasks::v1::ResizePtyRequest* request,
                         Empty* response) override;
  grpc::Status CloseIO(grpc::ServerContext* c,
                       const ::containerd::services::tasks::v1::CloseIORequest* request,
                       Empty* response) override;
  grpc::Status Pause(grpc::ServerContext* c,
                     const ::containerd::services::tasks::v1::PauseTaskRequest* request,
                     Empty* response) override;
  grpc::Status Resume(grpc::ServerContext* c,
                      const ::containerd::services::tasks::v1::ResumeTaskRequest* request,
                      Empty* response) override;
  grpc::Status ListPids(grpc::ServerContext* c,
                        const ::containerd::services::tasks::v1::ListPidsRequest* request,
                        ::containerd::services::tasks::v1::ListPidsResponse* response) override;
  grpc::Status Checkpoint(
      grpc::ServerContext* c,
      const ::containerd::services::tasks::v1::CheckpointTaskRequest* request,
      ::containerd::services::tasks::v1::CheckpointTaskResponse* response) override;
  grpc::Status Update(grpc::ServerContext* c,
                      const ::containerd::services::tasks::v1::UpdateTaskRequest* request,
                      Empty* response) override;
  grpc::Status Metrics(grpc::ServerContext* c,
                       const ::containerd::services::tasks::v1::MetricsRequest* request,
                       ::containerd::services::tasks::v1::MetricsResponse* response) override;
  grpc::Status Wait(grpc::ServerContext* c,
                    const ::containerd::services::tasks::v1::WaitRequest* request,
                    ::containerd::services::tasks::v1::WaitResponse* response) override;

 private:
  TaskManager& tasks_;
  const std::string default_namespace_;
};

}  // namespace berth::execd
