/*
 * labrun: run a command with a timeout inside L1, stream its output (stdout+stderr)
 * to our stdout with a prefix and a millisecond timestamp, copy it raw to a log file,
 * and report the exit status, the wall time, and when given marker strings first appeared.
 *
 *   labrun [-t SECS] [-g SECS] [-p PREFIX] [-o LOGFILE] [-m MARK]... -- CMD [ARGS...]
 *
 * -t: overall timeout. -g: once every marker has been seen, allow only this much longer
 * for the command to exit (a guest that printed everything but whose VMM never exits
 * then costs seconds, not the whole timeout).
 *
 * Last lines printed:  LABRUN mark=<MARK> ms=<ms since start>   (one per marker seen)
 *                      LABRUN exit=<code> ms=<wall ms> timeout=<0|1|grace>
 * exit code: the child's, 128+signal if killed by a signal, 124 on timeout.
 * Clock: CLOCK_MONOTONIC (ns resolution; printed in ms with 3 decimals).
 * Static build: gcc -O2 -static -o labrun labrun.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXMARKS 32

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static const char *marks[MAXMARKS];
static double mark_ms[MAXMARKS];
static int nmarks;
static double t0;
static const char *prefix = "";
static FILE *logf;

static void emit_line(const char *line, size_t len) {
    double t = now_ms() - t0;
    printf("%s%9.3f| %.*s\n", prefix, t, (int)len, line);
    fflush(stdout);
    if (logf) {
        fwrite(line, 1, len, logf);
        fputc('\n', logf);
        fflush(logf);
    }
    for (int i = 0; i < nmarks; i++)
        if (mark_ms[i] < 0 && memmem(line, len, marks[i], strlen(marks[i])))
            mark_ms[i] = t;
}

int main(int argc, char **argv) {
    double timeout_s = 60, grace_s = -1;
    const char *logpath = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "+t:g:p:o:m:")) != -1) {
        switch (opt) {
        case 't': timeout_s = atof(optarg); break;
        case 'g': grace_s = atof(optarg); break;
        case 'p': prefix = optarg; break;
        case 'o': logpath = optarg; break;
        case 'm':
            for (int i = 0; i < nmarks; i++)
                if (!strcmp(marks[i], optarg)) { optarg = NULL; break; }
            if (optarg && nmarks < MAXMARKS) { mark_ms[nmarks] = -1; marks[nmarks++] = optarg; }
            break;
        default:
            fprintf(stderr, "usage: labrun [-t SECS] [-g SECS] [-p PREFIX] [-o LOG] [-m MARK]... -- CMD...\n");
            return 2;
        }
    }
    if (optind >= argc) { fprintf(stderr, "labrun: no command\n"); return 2; }
    if (logpath && !(logf = fopen(logpath, "w"))) { perror(logpath); return 2; }

    int pfd[2];
    if (pipe(pfd)) { perror("pipe"); return 2; }
    t0 = now_ms();
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 2; }
    if (pid == 0) {
        setpgid(0, 0);
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0) dup2(null, 0);
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        close(pfd[0]);
        close(pfd[1]);
        execvp(argv[optind], argv + optind);
        fprintf(stderr, "labrun: exec %s: %s\n", argv[optind], strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid);
    close(pfd[1]);

    char buf[65536];
    size_t used = 0;
    int status = 0, exited = 0, timed_out = 0, eof = 0;
    double t_exit = 0, t_end = 0;
    while (!eof) {
        double elapsed = now_ms() - t0;
        double all_marks = -1;
        for (int i = 0; i < nmarks; i++) {
            if (mark_ms[i] < 0) { all_marks = -1; break; }
            if (mark_ms[i] > all_marks) all_marks = mark_ms[i];
        }
        int grace_over = grace_s >= 0 && nmarks && all_marks >= 0 && elapsed > all_marks + grace_s * 1e3;
        if (!exited && !timed_out && (elapsed > timeout_s * 1e3 || grace_over)) {
            timed_out = elapsed > timeout_s * 1e3 ? 1 : 2;
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
        }
        if (exited && now_ms() - t_exit > 2000) {
            /* child is gone but something in its group still holds the pipe */
            kill(-pid, SIGKILL);
            break;
        }
        struct pollfd p = {.fd = pfd[0], .events = POLLIN};
        int r = poll(&p, 1, 50);
        if (r > 0) {
            ssize_t n = read(pfd[0], buf + used, sizeof(buf) - used);
            if (n <= 0) {
                eof = 1;
            } else {
                used += n;
                size_t start = 0;
                for (size_t i = 0; i < used; i++) {
                    if (buf[i] == '\n') {
                        size_t l = i - start;
                        if (l && buf[start + l - 1] == '\r') l--;
                        emit_line(buf + start, l);
                        start = i + 1;
                    }
                }
                memmove(buf, buf + start, used - start);
                used -= start;
                if (used == sizeof(buf)) { emit_line(buf, used); used = 0; }
            }
        }
        if (!exited && waitpid(pid, &status, WNOHANG) == pid) {
            exited = 1;
            t_exit = now_ms();
            t_end = t_exit - t0;
        }
    }
    if (used) emit_line(buf, used);
    if (!exited) {
        if (waitpid(pid, &status, 0) == pid) exited = 1;
        t_end = now_ms() - t0;
    }
    int code;
    if (timed_out) code = 124;
    else if (WIFEXITED(status)) code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status)) code = 128 + WTERMSIG(status);
    else code = 255;
    for (int i = 0; i < nmarks; i++)
        if (mark_ms[i] >= 0) printf("LABRUN mark=%s ms=%.3f\n", marks[i], mark_ms[i]);
    printf("LABRUN exit=%d ms=%.3f timeout=%s\n", code, t_end,
           timed_out == 2 ? "grace" : timed_out ? "1" : "0");
    fflush(stdout);
    return code;
}
