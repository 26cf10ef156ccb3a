/* Escape probe for the hardening tests, built static on the host and run in the guest.
 *   escape probes       tries the ways out of the guest's ABI and vsock, prints "<name> <result>"
 *                       (0: the call succeeded; an errno; 1000 + signal when it killed the child)
 *   escape flood N DIR  makes N refused syscalls as fast as it can (each one a report from the
 *                       guest agent), creating DIR/mark-K after every N/20 of them */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *name, long rc) {
    printf("%s %d\n", name, rc < 0 ? errno : 0);
    fflush(stdout);
}

/* Runs f in a child: its result, or 1000 + the signal that killed it. */
static void in_child(const char *name, long (*f)(void)) {
    pid_t pid = fork();
    if (pid == 0) {
        long rc = f();
        _exit(rc < 0 ? errno : 0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    printf("%s %d\n", name, WIFSIGNALED(status) ? 1000 + WTERMSIG(status) : WEXITSTATUS(status));
    fflush(stdout);
}

/* i386 keyctl (288) through the 32-bit entry point. */
static long int80(void) {
    long rc;
    __asm__ volatile("int $0x80" : "=a"(rc) : "a"(288L), "b"(0L), "c"(-3L), "d"(1L) : "memory");
    if (rc < 0) {
        errno = (int)-rc;
        return -1;
    }
    return rc;
}

/* x32 keyctl: the x86-64 number with __X32_SYSCALL_BIT. */
static long x32(void) { return syscall(0x40000000L | SYS_keyctl, 0, -3, 1); }

static long vsock_to(unsigned cid, unsigned port) {
    int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    /* A connection the host neither serves nor ends reports EAGAIN here instead of hanging. */
    struct timeval wait = {.tv_sec = 30};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
    struct sockaddr_vm addr = {.svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port};
    long rc = connect(fd, (struct sockaddr *)&addr, sizeof addr);
    int saved = errno;
    if (rc == 0) {
        /* Connected: try to speak to it, then see whether it stays. */
        char junk[64] = "{\"ready\":{}}\n";
        (void)!write(fd, junk, strlen(junk));
        ssize_t n = read(fd, junk, sizeof junk);
        rc = n > 0 ? 0 : -1;
        saved = n == 0 ? ECONNRESET : errno;
    }
    close(fd);
    errno = saved;
    return rc;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "flood") == 0) {
        long n = atol(argv[2]);
        long every = n / 20 > 0 ? n / 20 : 1;
        long refused = 0;
        for (long i = 0; i < n; i++) {
            if (syscall(SYS_keyctl, 0, -3, 1) < 0) refused++;
            if ((i + 1) % every == 0) {
                char path[4096];
                snprintf(path, sizeof path, "%s/mark-%ld", argv[3], (i + 1) / every);
                int fd = open(path, O_CREAT | O_WRONLY, 0644);
                if (fd >= 0) close(fd);
            }
        }
        printf("refused %ld of %ld\n", refused, n);
        return 0;
    }
    int code = 0;
    report("tioclinux", ioctl(0, TIOCLINUX, &code));
    in_child("int80", int80);
    in_child("x32", x32);
    report("vsock_control", vsock_to(VMADDR_CID_HOST, 1025));
    report("vsock_other_port", vsock_to(VMADDR_CID_HOST, 7777));
    report("vsock_other_cid", vsock_to(5, 1024));
    return 0;
}
