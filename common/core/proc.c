#include "core/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int slex_proc_in_path(const char *name) {
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/bin:/usr/bin"; /* execvp's own default */
    while (*path) {
        size_t len = strcspn(path, ":");
        char full[4200];
        snprintf(full, sizeof full, "%.*s/%s", (int)(len ? len : 1), len ? path : ".", name);
        if (!access(full, X_OK)) return 1;
        path += len + (path[len] == ':');
    }
    return 0;
}

int slex_proc_run(char *const argv[], slex_proc_text *out, slex_proc_text *errs, int *status, slex_error *err) {
    int po[2], pe[2];
    if (pipe2(po, O_CLOEXEC)) return slex_fail_as(err, slex_errno_kind(errno), "pipe: %s", strerror(errno));
    if (pipe2(pe, O_CLOEXEC)) {
        close(po[0]);
        close(po[1]);
        return slex_fail_as(err, slex_errno_kind(errno), "pipe: %s", strerror(errno));
    }
    fflush(NULL); /* nothing buffered may be written twice */
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(po[0]), close(po[1]), close(pe[0]), close(pe[1]);
        return slex_fail_as(err, slex_errno_kind(e), "fork: %s", strerror(e));
    }
    if (pid == 0) {
        int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (in < 0 || dup2(in, 0) < 0 || dup2(po[1], 1) < 0 || dup2(pe[1], 2) < 0) _exit(126);
        execvp(argv[0], argv);
        dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    struct pollfd fds[2] = {{.fd = po[0], .events = POLLIN}, {.fd = pe[0], .events = POLLIN}};
    FILE *mem[2] = {open_memstream(&out->p, &out->n), open_memstream(&errs->p, &errs->n)};
    int open_fds = 2, bad = !mem[0] || !mem[1];
    while (open_fds && !bad) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            bad = 1;
            break;
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char chunk[65536];
            ssize_t got = read(fds[i].fd, chunk, sizeof chunk);
            if (got < 0 && errno == EINTR) continue;
            if (got < 0) bad = 1; /* not an end of file: the output would be cut */
            if (got > 0 && fwrite(chunk, 1, (size_t)got, mem[i]) != (size_t)got) bad = 1;
            if (got <= 0) {
                close(fds[i].fd);
                fds[i].fd = -1;
                open_fds--;
            }
        }
    }
    for (int i = 0; i < 2; i++) {
        if (fds[i].fd >= 0) close(fds[i].fd);
        if (mem[i] && fclose(mem[i])) bad = 1;
    }
    if (!out->p || !errs->p) bad = 1;
    if (bad) kill(pid, SIGKILL);
    pid_t waited;
    while ((waited = waitpid(pid, status, 0)) < 0 && errno == EINTR) {}
    if (waited < 0) /* SIGCHLD ignored, say: without a status a failed program would look fine */
        return slex_fail_as(err, SLEX_ERR_INTERNAL, "%s: waitpid: %s", argv[0], strerror(errno));
    if (bad)
        return slex_fail_as(err, SLEX_ERR_RESOURCE, "%s: out of memory or a read failure on its output", argv[0]);
    return 0;
}

void slex_proc_last_line(const char *s, char *buf, size_t size) {
    size_t len = strlen(s);
    while (len && (s[len - 1] == '\n' || s[len - 1] == '\r')) len--;
    size_t start = len;
    while (start && s[start - 1] != '\n') start--;
    snprintf(buf, size, "%.*s", (int)(len - start), s + start);
}

void slex_proc_describe_exit(int status, const char *errs, char *buf, size_t size) {
    char line[512];
    slex_proc_last_line(errs, line, sizeof line);
    char how[96];
    if (WIFSIGNALED(status)) snprintf(how, sizeof how, "was killed by %s", strsignal(WTERMSIG(status)));
    else snprintf(how, sizeof how, "exited with status %d", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    snprintf(buf, size, "%s%s%s", how, line[0] ? ": " : "", line);
}

int slex_proc_succeeded(int status) { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }

int slex_proc_tmpdir(const char *tag, char *buf, size_t size, slex_error *err) {
    const char *tmp = getenv("TMPDIR");
    if ((size_t)snprintf(buf, size, "%s/slex-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", tag) >= size)
        return slex_fail_as(err, SLEX_ERR_INPUT, "TMPDIR %s: path too long", tmp);
    if (!mkdtemp(buf))
        return slex_fail_as(err, slex_errno_kind(errno), "%s: cannot create a temporary directory: %s", buf,
                            strerror(errno));
    return 0;
}
