/* Syscall probe for the hardening tests: tries each call the seccomp profiles refuse and prints
 * "<name> <errno>" (0 when the call succeeded). Built static on the host, run in the guest. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <netinet/in.h>
#include <unistd.h>

static void report(const char *name, long rc) {
    printf("%s %d\n", name, rc < 0 ? errno : 0);
}

int main(void) {
    char buf[64] = {0};
    /* KEYCTL_GET_KEYRING_ID (0) of the session keyring (-3), create = 1 */
    report("keyctl", syscall(SYS_keyctl, 0, -3, 1));
    report("add_key", syscall(SYS_add_key, "user", "airlock-probe", "x", 1, -3));
    report("bpf", syscall(SYS_bpf, 0, buf, sizeof buf));
    report("perf_event_open", syscall(SYS_perf_event_open, buf, 0, -1, -1, 0));
    report("userfaultfd", syscall(SYS_userfaultfd, 0));
    report("io_uring_setup", syscall(SYS_io_uring_setup, 1, buf));
    report("unshare_user", syscall(SYS_unshare, CLONE_NEWUSER));
    report("mount", syscall(SYS_mount, "none", "/tmp", "tmpfs", 0, 0));
    report("init_module", syscall(SYS_init_module, buf, 0, ""));
    report("tiocsti", ioctl(0, TIOCSTI, "x"));
    report("ptrace", syscall(SYS_ptrace, 0 /* PTRACE_TRACEME */, 0, 0, 0));
    report("raw_socket", socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
    fflush(stdout);
    return 0;
}
