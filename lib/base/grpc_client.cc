#include "lib/base/grpc_client.h"

namespace berth {

namespace {

std::shared_ptr<grpc::Channel> DialWith(const std::string& address, bool own_connection) {
  std::string target = address;
  if (!address.empty() && address[0] == '/') {
    target = "unix:" + address;
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  if (own_connection) {
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  }
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

}  // namespace

std::shared_ptr<grpc::Channel> Dial(const std::string& address) { return DialWith(address, false); }

std::shared_ptr<grpc::Channel> DialOwnConnection(const std::string& address) {
  return DialWith(address, true);
}

void ApplyContext(const Context& ctx, grpc::ClientContext* client_context) {
  if (!ctx.ns.empty()) {
    client_context->AddMetadata("containerd-namespace", ctx.ns);
  }
  if (!ctx.lease.empty()) {
    client_context->AddMetadata("containerd-lease", ctx.lease);
  }
  if (ctx.deadline != absl::InfiniteFuture()) {
    client_context->set_deadline(absl::ToChronoTime(ctx.deadline));
  }
}

}  // namespace berth
