//! seccomp filters for tests that need a hostile kernel: small BPF programs built with
//! libc's constants and installed with the raw `prctl` and `seccomp` syscalls on the
//! calling thread (run them in a child process: a filter cannot be removed). `unsafe`
//! is needed for those two syscalls.

#![allow(dead_code, unsafe_code)]

pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// Offsets into `struct seccomp_data`: nr, arch, then args[i] at 16 + 8 i (low word
/// first on x86-64).
pub const NR: u32 = 0;
pub const ARCH: u32 = 4;
pub const fn arg_lo(i: u32) -> u32 {
    16 + 8 * i
}
pub const fn arg_hi(i: u32) -> u32 {
    20 + 8 * i
}

pub fn load(offset: u32) -> libc::sock_filter {
    libc::sock_filter { code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16, jt: 0, jf: 0, k: offset }
}
pub fn jeq(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16, jt, jf, k }
}
pub fn jset(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code: (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16, jt, jf, k }
}
pub fn ret(k: u32) -> libc::sock_filter {
    libc::sock_filter { code: (libc::BPF_RET | libc::BPF_K) as u16, jt: 0, jf: 0, k }
}
pub fn refuse_with(errno: i32) -> libc::sock_filter {
    ret(libc::SECCOMP_RET_ERRNO | (errno as u32 & libc::SECCOMP_RET_DATA))
}

/// Fails `mprotect`, `pkey_mprotect` and `mmap` whose protection includes `PROT_EXEC`
/// with `EACCES`, as SELinux `execmem` does; allows everything else.
pub fn refuse_prot_exec() -> Vec<libc::sock_filter> {
    vec![
        load(ARCH),                                // 0
        jeq(AUDIT_ARCH_X86_64, 0, 6),              // 1: other ABI -> 8 allow
        load(NR),                                  // 2
        jeq(libc::SYS_mprotect as u32, 2, 0),      // 3: -> 6
        jeq(libc::SYS_pkey_mprotect as u32, 1, 0), // 4: -> 6
        jeq(libc::SYS_mmap as u32, 0, 2),          // 5: -> 6, else -> 8
        load(arg_lo(2)),                           // 6: prot
        jset(libc::PROT_EXEC as u32, 1, 0),        // 7: -> 9 refuse, else 8
        ret(libc::SECCOMP_RET_ALLOW),              // 8
        refuse_with(libc::EACCES),                 // 9
    ]
}

/// Fails `munmap` of exactly `len` bytes with `EPERM`; allows everything else.
pub fn refuse_munmap_of_len(len: usize) -> Vec<libc::sock_filter> {
    assert!(u32::try_from(len).is_ok());
    vec![
        load(ARCH),                         // 0
        jeq(AUDIT_ARCH_X86_64, 0, 6),       // 1: -> 8 allow
        load(NR),                           // 2
        jeq(libc::SYS_munmap as u32, 0, 4), // 3: -> 8 allow
        load(arg_lo(1)),                    // 4: length, low word
        jeq(len as u32, 0, 2),              // 5: -> 8 allow
        load(arg_hi(1)),                    // 6: length, high word
        jeq(0, 1, 0),                       // 7: -> 9 refuse
        ret(libc::SECCOMP_RET_ALLOW),       // 8
        refuse_with(libc::EPERM),           // 9
    ]
}

/// Installs `program` as a seccomp filter on the calling thread (only: no TSYNC) with
/// the raw `prctl` and `seccomp` syscalls. It cannot be removed again.
pub fn install_filter(program: &[libc::sock_filter]) {
    let prog = libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr().cast_mut() };
    // SAFETY: PR_SET_NO_NEW_PRIVS takes no pointers; it only restricts this thread.
    let r = unsafe { libc::syscall(libc::SYS_prctl, libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    assert_eq!(r, 0, "prctl(PR_SET_NO_NEW_PRIVS): {}", std::io::Error::last_os_error());
    // SAFETY: the kernel copies `prog` and the `program` it points to (both live here)
    // before returning.
    let r = unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &prog) };
    assert_eq!(r, 0, "seccomp(SECCOMP_SET_MODE_FILTER): {}", std::io::Error::last_os_error());
}

/// Fails `mprotect` and `pkey_mprotect` adding `PROT_EXEC`, and `mmap` of *anonymous*
/// memory with `PROT_EXEC`, with `EACCES`: what SELinux `deny_execmem` refuses. A shared
/// file mapping with `PROT_EXEC` (the execution of a file) is allowed, as it is there.
pub fn refuse_anonymous_exec() -> Vec<libc::sock_filter> {
    vec![
        load(ARCH),                                // 0
        jeq(AUDIT_ARCH_X86_64, 0, 10),             // 1: other ABI -> 12 allow
        load(NR),                                  // 2
        jeq(libc::SYS_mprotect as u32, 2, 0),      // 3: -> 6
        jeq(libc::SYS_pkey_mprotect as u32, 1, 0), // 4: -> 6
        jeq(libc::SYS_mmap as u32, 2, 6),          // 5: -> 8, else -> 12
        load(arg_lo(2)),                           // 6: mprotect's prot
        jset(libc::PROT_EXEC as u32, 5, 4),        // 7: -> 13 refuse, else 12
        load(arg_lo(2)),                           // 8: mmap's prot
        jset(libc::PROT_EXEC as u32, 0, 2),        // 9: -> 10, else 12
        load(arg_lo(3)),                           // 10: mmap's flags
        jset(libc::MAP_ANONYMOUS as u32, 1, 0),    // 11: -> 13 refuse, else 12
        ret(libc::SECCOMP_RET_ALLOW),              // 12
        refuse_with(libc::EACCES),                 // 13
    ]
}
