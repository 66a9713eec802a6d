/* api: a minimal client of the vmm's REST API for the lab's L1 (busybox has no HTTP client
 * for unix sockets). One request per run:
 *
 *   api SOCKET METHOD ENDPOINT [BODY]
 *
 * prints "LAB-API <ENDPOINT> <STATUS>" and then the response body on its own line, and exits
 * 0 for a 2xx status, 1 otherwise (2 when the socket cannot be reached). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: api SOCKET METHOD ENDPOINT [BODY]\n");
        return 2;
    }
    const char *body = argc == 5 ? argv[4] : "";
    /* The vmm may answer (vmm.shutdown: and exit) before a second write: an EPIPE then is
     * not a reason to lose the answer. The request goes out in one write anyway. */
    signal(SIGPIPE, SIG_IGN);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, argv[1], sizeof(a.sun_path) - 1);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        printf("LAB-API %s unreachable\n", argv[3]);
        return 2;
    }
    static char req[65536];
    int n = snprintf(req, sizeof(req),
                     "%s /api/v1/%s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     argv[2], argv[3], strlen(body), body);
    if (n <= 0 || n >= (int)sizeof(req) || write(fd, req, n) != n) {
        printf("LAB-API %s write-failed\n", argv[3]);
        return 2;
    }
    static char buf[65536];
    size_t got = 0;
    long want = -1;
    for (;;) {
        ssize_t r = read(fd, buf + got, sizeof(buf) - 1 - got);
        if (r <= 0)
            break;
        got += r;
        buf[got] = 0;
        char *end = strstr(buf, "\r\n\r\n");
        if (end) {
            char *cl = strstr(buf, "Content-Length: ");
            want = cl && cl < end ? atol(cl + 16) : 0;
            if ((long)(got - (end + 4 - buf)) >= want)
                break;
        }
    }
    int status = 0;
    if (sscanf(buf, "HTTP/1.1 %d", &status) != 1) {
        printf("LAB-API %s no-response\n", argv[3]);
        return 2;
    }
    char *end = strstr(buf, "\r\n\r\n");
    printf("LAB-API %s %d\n%s\n", argv[3], status, end ? end + 4 : "");
    return status >= 200 && status < 300 ? 0 : 1;
}
