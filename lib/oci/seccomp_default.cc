// Docker's and containerd's default seccomp profile (containerd's contrib/seccomp, moby's
// profiles/seccomp/default.json): an allow-list; everything else fails with EPERM.

#include <errno.h>
#include <sched.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "lib/oci/spec.h"

namespace berth::oci {
namespace {

// Allowed for every process, on every architecture (unknown names are ignored by libseccomp).
constexpr const char kAllowed[] =
    "accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32 "
    "clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime "
    "clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range connect "
    "copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old "
    "epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit "
    "exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir "
    "fchmod fchmodat fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr "
    "flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync "
    "ftruncate ftruncate64 futex futex_time64 futex_waitv futimesat getcpu getcwd getdents "
    "getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32 "
    "getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid "
    "getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid getsockname "
    "getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch "
    "inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents "
    "io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit "
    "io_uring_enter io_uring_register io_uring_setup ipc kill landlock_add_rule "
    "landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link linkat "
    "listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 madvise "
    "membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 "
    "mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive "
    "mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl msgget "
    "msgrcv msgsnd msync munlock munlockall munmap nanosleep newfstatat _newselect open openat "
    "openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect "
    "poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6 "
    "pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv "
    "recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr rename renameat "
    "renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask "
    "rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 "
    "rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam sched_get_priority_max "
    "sched_get_priority_min sched_getscheduler sched_rr_get_interval "
    "sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam "
    "sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop "
    "semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 "
    "setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority "
    "setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32 "
    "setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid "
    "setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 "
    "sigprocmask sigreturn socket socketcall socketpair splice stat stat64 statfs statfs64 "
    "statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create "
    "timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64 "
    "timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times "
    "tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat utime utimensat "
    "utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev"
    ;

// Syscalls a capability in the bounding set unlocks.
const std::map<std::string, std::string>& CapabilitySyscalls() {
  static const auto* m = new std::map<std::string, std::string>{
      {"CAP_DAC_READ_SEARCH", "open_by_handle_at"},
      {"CAP_SYS_ADMIN",
       "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount "
       "mount_setattr move_mount name_to_handle_at open_tree perf_event_open quotactl "
       "quotactl_fd setdomainname sethostname setns syslog umount umount2 unshare"},
      {"CAP_SYS_BOOT", "reboot"},
      {"CAP_SYS_CHROOT", "chroot"},
      {"CAP_SYS_MODULE", "delete_module init_module finit_module"},
      {"CAP_SYS_PACCT", "acct"},
      {"CAP_SYS_PTRACE", "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev"},
      {"CAP_SYS_RAWIO", "iopl ioperm"},
      {"CAP_SYS_TIME", "settimeofday stime clock_settime clock_settime64"},
      {"CAP_SYS_TTY_CONFIG", "vhangup"},
      {"CAP_SYS_NICE", "get_mempolicy mbind set_mempolicy"},
      {"CAP_SYSLOG", "syslog"},
      {"CAP_BPF", "bpf"},
      {"CAP_PERFMON", "perf_event_open"},
  };
  return *m;
}

nlohmann::json Allow(absl::string_view names) {
  std::vector<std::string> list = absl::StrSplit(names, ' ', absl::SkipEmpty());
  return {{"names", list}, {"action", "SCMP_ACT_ALLOW"}};
}

nlohmann::json AllowIfArg0(absl::string_view name, uint64_t value, absl::string_view op,
                           uint64_t value_two = 0) {
  nlohmann::json arg = {{"index", 0}, {"value", value}, {"op", op}};
  if (value_two != 0 || op == "SCMP_CMP_MASKED_EQ") {
    arg["valueTwo"] = value_two;
  }
  return {{"names", {name}}, {"action", "SCMP_ACT_ALLOW"}, {"args", {arg}}};
}

}  // namespace

absl::StatusOr<nlohmann::json> DefaultSeccompProfile(absl::string_view arch,
                                                     const std::vector<std::string>& caps) {
  std::vector<std::string> arches;
  std::string arch_only;
  if (arch == "amd64" || arch == "x86_64") {
    arches = {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"};
    arch_only = "arch_prctl modify_ldt";
  } else if (arch == "arm64" || arch == "aarch64") {
    arches = {"SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"};
    arch_only = "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls";
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("seccomp: no default profile for architecture \"", arch, "\""));
  }
  nlohmann::json syscalls = nlohmann::json::array();
  syscalls.push_back(Allow(kAllowed));
  // personality(2) only with the personas Docker allows (PER_LINUX, PER_LINUX32, UNAME26 and
  // their combinations, and the query 0xffffffff).
  for (uint64_t persona : {0x0ull, 0x0008ull, 0x20000ull, 0x20008ull, 0xffffffffull}) {
    syscalls.push_back(AllowIfArg0("personality", persona, "SCMP_CMP_EQ"));
  }
  syscalls.push_back(Allow("ptrace"));  // safe from kernel 4.8 on, which berth requires
  syscalls.push_back(Allow(arch_only));

  bool admin = false;
  for (const std::string& cap : caps) {
    auto it = CapabilitySyscalls().find(cap);
    if (it != CapabilitySyscalls().end()) {
      syscalls.push_back(Allow(it->second));
    }
    if (cap == "CAP_SYS_PTRACE") {
      syscalls.push_back(Allow("ptrace"));
    }
    admin = admin || cap == "CAP_SYS_ADMIN";
  }
  if (!admin) {
    // clone(2) but never a new namespace; clone3 cannot be filtered on its flags, so it says
    // ENOSYS and libc falls back to clone.
    constexpr uint64_t kNamespaceFlags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC |
                                         CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET |
                                         CLONE_NEWCGROUP;
    syscalls.push_back(AllowIfArg0("clone", kNamespaceFlags, "SCMP_CMP_MASKED_EQ", 0));
    syscalls.push_back(
        {{"names", {"clone3"}}, {"action", "SCMP_ACT_ERRNO"}, {"errnoRet", ENOSYS}});
  }
  return nlohmann::json{{"defaultAction", "SCMP_ACT_ERRNO"},
                        {"architectures", arches},
                        {"syscalls", syscalls}};
}

}  // namespace berth::oci
