//! The last steps before `execve`, in the server's own process: rlimits, no capabilities, Landlock
//! rules that match the mounts, and the seccomp allow-list (always last: it also forbids the calls
//! the earlier steps make).

use std::collections::BTreeMap;
use std::path::Path;

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope,
};
use rustix::process::{Resource, Rlimit};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

use super::SandboxSpec;
use super::sys;
use crate::sandbox::exec::SetupError;

/// The Landlock ABI whose rights are asked for (BestEffort lowers it to what the kernel has).
const LANDLOCK_ABI: ABI = ABI::V6;

/// Directories of the view the server may write to besides the profile's `write` paths.
const PRIVATE_WRITABLE: &[&str] = &["/tmp", "/dev", "/proc"];

fn err(what: &str, e: impl std::fmt::Display) -> SetupError {
    SetupError { step: what.to_owned(), source: std::io::Error::other(e.to_string()) }
}

/// RLIMIT_NOFILE, RLIMIT_NPROC and optionally RLIMIT_AS and RLIMIT_DATA, never above the
/// current hard limit (hard = soft: the server cannot raise them again).
pub fn set_rlimits(spec: &SandboxSpec) -> Result<(), SetupError> {
    let mut limits = vec![(Resource::Nofile, spec.max_open_files), (Resource::Nproc, spec.max_processes)];
    if let Some(bytes) = spec.max_address_space {
        limits.push((Resource::As, bytes));
    }
    if let Some(bytes) = spec.max_memory {
        limits.push((Resource::Data, bytes));
    }
    for (resource, want) in limits {
        let current = rustix::process::getrlimit(resource);
        let value = current.maximum.map_or(want, |hard| hard.min(want));
        rustix::process::setrlimit(resource, Rlimit { current: Some(value), maximum: Some(value) })
            .map_err(|e| err(&format!("set {resource:?} to {value}"), e))?;
    }
    Ok(())
}

/// Drops every capability for good (see [`sys::drop_all_capabilities`]).
pub fn drop_capabilities() -> Result<(), SetupError> {
    sys::drop_all_capabilities().map_err(|source| SetupError { step: "drop capabilities".into(), source })
}

/// Landlock: read (and execute) below the read-only mounts, everything below the writable ones,
/// nothing elsewhere; no TCP bind or connect without host network; no signals or abstract UNIX
/// sockets out of the sandbox. Returns how much of it the kernel enforces.
pub fn landlock(spec: &SandboxSpec) -> Result<RulesetStatus, SetupError> {
    let abi = LANDLOCK_ABI;
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .map_err(|e| err("landlock filesystem rights", e))?
        .scope(Scope::from_all(abi))
        .map_err(|e| err("landlock scopes", e))?;
    if !spec.host_network {
        ruleset = ruleset.handle_access(AccessNet::from_all(abi)).map_err(|e| err("landlock network rights", e))?;
    }
    let mut created = ruleset.create().map_err(|e| err("create the landlock ruleset", e))?;
    let read_only = spec.read_only.iter().map(|m| (m.inside.as_path(), AccessFs::from_read(abi)));
    let writable = spec
        .read_write
        .iter()
        .map(|m| m.inside.as_path())
        .chain(PRIVATE_WRITABLE.iter().map(Path::new))
        .map(|p| (p, AccessFs::from_all(abi)));
    // Listing `/` shows only what the view holds; without it `ls /` and some runtimes' probes fail.
    let root = std::iter::once((Path::new("/"), AccessFs::ReadDir.into()));
    for (path, access) in root.chain(read_only).chain(writable) {
        // Optional mounts that were skipped are not there to open.
        let Ok(meta) = std::fs::metadata(path) else { continue };
        let access = if meta.is_dir() { access } else { access & AccessFs::from_file(abi) };
        let fd = PathFd::new(path).map_err(|e| err(&format!("open {} for landlock", path.display()), e))?;
        created = created
            .add_rule(PathBeneath::new(fd, access))
            .map_err(|e| err(&format!("landlock rule for {}", path.display()), e))?;
    }
    if let Some(bridge) = &spec.egress {
        // The one TCP connection the server may open: to the egress bridge inside its namespace.
        created = created
            .add_rule(NetPort::new(bridge.port, AccessNet::ConnectTcp))
            .map_err(|e| err("landlock rule for the egress port", e))?;
    }
    if let Some(bridge) = &spec.inbound {
        // An HTTP server binds its one port, which pid 1 forwards the proxy's connections to.
        created = created
            .add_rule(NetPort::new(bridge.port, AccessNet::BindTcp))
            .map_err(|e| err("landlock rule for the server's port", e))?;
    }
    let status = created.restrict_self().map_err(|e| err("enforce landlock", e))?;
    Ok(status.ruleset)
}

/// Namespace-creating flags a sandboxed `clone` may not carry.
const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// System calls the server may make; everything else fails with EPERM. Taken from the calls
/// Docker's default profile allows, minus those that reach outside a sandbox: ptrace, mount and
/// the new mount API, bpf, keyctl, kexec, modules, namespaces (`unshare`, `setns`), io_uring
/// (it bypasses seccomp), perf, userfaultfd, process_vm_*, clock setting, reboot, swap, quotas.
const ALLOWED: &[i64] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_preadv2,
    libc::SYS_pwritev2,
    libc::SYS_close,
    libc::SYS_close_range,
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_lseek,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_statfs,
    libc::SYS_fstatfs,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_fchmod,
    libc::SYS_fchmodat,
    libc::SYS_fchown,
    libc::SYS_fchownat,
    libc::SYS_getdents64,
    libc::SYS_getcwd,
    libc::SYS_chdir,
    libc::SYS_fchdir,
    libc::SYS_mkdirat,
    libc::SYS_unlinkat,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_linkat,
    libc::SYS_symlinkat,
    libc::SYS_readlinkat,
    libc::SYS_utimensat,
    libc::SYS_truncate,
    libc::SYS_ftruncate,
    libc::SYS_fallocate,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_sync_file_range,
    libc::SYS_fadvise64,
    libc::SYS_flock,
    libc::SYS_fcntl,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_pipe2,
    libc::SYS_ioctl,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_mlock,
    libc::SYS_mlock2,
    libc::SYS_munlock,
    libc::SYS_mincore,
    libc::SYS_msync,
    libc::SYS_brk,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigsuspend,
    libc::SYS_rt_sigpending,
    libc::SYS_rt_sigtimedwait,
    libc::SYS_rt_sigqueueinfo,
    libc::SYS_rt_tgsigqueueinfo,
    libc::SYS_sigaltstack,
    libc::SYS_kill,
    libc::SYS_tgkill,
    libc::SYS_tkill,
    libc::SYS_getpid,
    libc::SYS_getppid,
    libc::SYS_gettid,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_getgroups,
    libc::SYS_getresuid,
    libc::SYS_getresgid,
    libc::SYS_setuid,
    libc::SYS_setgid,
    libc::SYS_setresuid,
    libc::SYS_setresgid,
    libc::SYS_setgroups,
    libc::SYS_getpgid,
    libc::SYS_setpgid,
    libc::SYS_getsid,
    libc::SYS_setsid,
    libc::SYS_getrlimit,
    libc::SYS_setrlimit,
    libc::SYS_prlimit64,
    libc::SYS_getrusage,
    libc::SYS_times,
    libc::SYS_sysinfo,
    libc::SYS_uname,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_sched_setaffinity,
    libc::SYS_sched_getparam,
    libc::SYS_sched_getscheduler,
    libc::SYS_sched_get_priority_max,
    libc::SYS_sched_get_priority_min,
    libc::SYS_sched_rr_get_interval,
    libc::SYS_nanosleep,
    libc::SYS_clock_nanosleep,
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_gettimeofday,
    libc::SYS_futex,
    libc::SYS_futex_waitv,
    libc::SYS_set_robust_list,
    libc::SYS_get_robust_list,
    libc::SYS_set_tid_address,
    libc::SYS_rseq,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_wait4,
    libc::SYS_waitid,
    libc::SYS_clone3,
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_prctl,
    libc::SYS_getrandom,
    libc::SYS_memfd_create,
    libc::SYS_eventfd2,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    libc::SYS_ppoll,
    libc::SYS_pselect6,
    libc::SYS_timerfd_create,
    libc::SYS_timerfd_settime,
    libc::SYS_timerfd_gettime,
    libc::SYS_signalfd4,
    libc::SYS_inotify_init1,
    libc::SYS_inotify_add_watch,
    libc::SYS_inotify_rm_watch,
    libc::SYS_socket,
    libc::SYS_socketpair,
    libc::SYS_connect,
    libc::SYS_bind,
    libc::SYS_listen,
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    libc::SYS_setsockopt,
    libc::SYS_getsockopt,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    libc::SYS_sendmmsg,
    libc::SYS_recvmmsg,
    libc::SYS_shutdown,
    libc::SYS_io_setup,
    libc::SYS_io_submit,
    libc::SYS_io_getevents,
    libc::SYS_io_destroy,
    libc::SYS_io_cancel,
    libc::SYS_capget,
    libc::SYS_umask,
    libc::SYS_getpriority,
    libc::SYS_setpriority,
    libc::SYS_getxattr,
    libc::SYS_lgetxattr,
    libc::SYS_fgetxattr,
    libc::SYS_listxattr,
    libc::SYS_llistxattr,
    libc::SYS_flistxattr,
    libc::SYS_setxattr,
    libc::SYS_fsetxattr,
    libc::SYS_removexattr,
    libc::SYS_fremovexattr,
    libc::SYS_mbind,
    libc::SYS_get_mempolicy,
    libc::SYS_set_mempolicy,
    libc::SYS_membarrier,
    libc::SYS_copy_file_range,
    libc::SYS_splice,
    libc::SYS_tee,
    libc::SYS_vmsplice,
    libc::SYS_sendfile,
    libc::SYS_timer_create,
    libc::SYS_timer_settime,
    libc::SYS_timer_gettime,
    libc::SYS_timer_delete,
    libc::SYS_timer_getoverrun,
    libc::SYS_getitimer,
    libc::SYS_setitimer,
    libc::SYS_pidfd_open,
    libc::SYS_pidfd_send_signal,
    libc::SYS_pkey_alloc,
    libc::SYS_pkey_free,
    libc::SYS_pkey_mprotect,
    libc::SYS_seccomp,
    libc::SYS_landlock_create_ruleset,
    libc::SYS_landlock_add_rule,
    libc::SYS_landlock_restrict_self,
    libc::SYS_restart_syscall,
    libc::SYS_sched_getattr,
    libc::SYS_sched_setattr,
    libc::SYS_ioprio_get,
    libc::SYS_ioprio_set,
    libc::SYS_name_to_handle_at,
    libc::SYS_fchmodat2,
    libc::SYS_process_mrelease,
    libc::SYS_mseal,
    libc::SYS_personality,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_open,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_stat,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_lstat,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_access,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_pipe,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_dup2,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_poll,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_select,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_epoll_create,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_epoll_wait,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_fork,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_vfork,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_chmod,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_chown,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_lchown,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_mkdir,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_rmdir,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_unlink,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_rename,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_link,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_symlink,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_readlink,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_creat,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_utime,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_utimes,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_futimesat,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_getdents,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_time,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_alarm,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_pause,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_arch_prctl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_getpgrp,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_eventfd,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_signalfd,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_inotify_init,
];

/// The two seccomp programs, in the order they are installed: one that answers `clone3` with
/// ENOSYS (so libc falls back to `clone`, whose flags a filter can see), and the allow-list.
pub fn seccomp_programs() -> Result<Vec<BpfProgram>, SetupError> {
    let arch: TargetArch = std::env::consts::ARCH.try_into().map_err(|e| err("seccomp for this architecture", e))?;
    let clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(|e| err("build the clone3 filter", e))?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = ALLOWED.iter().map(|&nr| (nr, Vec::new())).collect();
    // clone is allowed only without namespace flags. The flags are argument 0 on x86_64 and aarch64.
    let no_namespaces =
        SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(CLONE_NAMESPACE_FLAGS), 0)
            .map_err(|e| err("build the clone rule", e))?;
    rules.insert(
        libc::SYS_clone,
        vec![SeccompRule::new(vec![no_namespaces]).map_err(|e| err("build the clone rule", e))?],
    );
    let allow = SeccompFilter::new(rules, SeccompAction::Errno(libc::EPERM as u32), SeccompAction::Allow, arch)
        .map_err(|e| err("build the seccomp allow-list", e))?;
    let mut out = Vec::new();
    for f in [clone3, allow] {
        out.push(f.try_into().map_err(|e: seccompiler::BackendError| err("compile the seccomp filter", e))?);
    }
    Ok(out)
}

/// Installs the programs from [`seccomp_programs`]. Nothing but `execve` may follow.
pub fn apply_seccomp(programs: &[BpfProgram]) -> Result<(), SetupError> {
    for p in programs {
        seccompiler::apply_filter(p).map_err(|e| err("install the seccomp filter", e))?;
    }
    Ok(())
}
