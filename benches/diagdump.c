/* benches/diagdump.c: the floor for reading sockets over netlink. Dumps the
 * TCP sockets of both families through NETLINK_SOCK_DIAG, as prestop-wait's
 * netlink source asks for them (the states that can block, no extensions),
 * and reads every datagram without parsing it: what any netlink reader pays
 * before it looks at a single socket. Prints the number of messages.
 * `diagdump info` asks for each socket's tcp_info too (INET_DIAG_INFO), as
 * `check --json` and `quiesce` do. */
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static long dump(int fd, int family, unsigned seq, int info) {
    struct {
        struct nlmsghdr h;
        struct inet_diag_req_v2 r;
    } req;
    memset(&req, 0, sizeof req);
    req.h.nlmsg_len = sizeof req;
    req.h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.h.nlmsg_seq = seq;
    req.r.sdiag_family = family;
    req.r.sdiag_protocol = IPPROTO_TCP;
    /* 1..11 but SYN_RECV (3) and TIME_WAIT (6). */
    req.r.idiag_states = 0xfff & ~((1 << 0) | (1 << 3) | (1 << 6));
    if (info)
        req.r.idiag_ext = 1 << (INET_DIAG_INFO - 1);
    struct sockaddr_nl nl = {.nl_family = AF_NETLINK};
    if (sendto(fd, &req, sizeof req, 0, (struct sockaddr *)&nl, sizeof nl) < 0)
        return -1;
    static char buf[32768];
    long messages = 0;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
            return -1;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE)
                return messages;
            if (h->nlmsg_type == NLMSG_ERROR)
                return -1;
            messages++;
        }
    }
}

int main(int argc, char **argv) {
    int info = argc > 1 && strcmp(argv[1], "info") == 0;
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0) {
        perror("socket");
        return 1;
    }
    long a = dump(fd, AF_INET, 1, info), b = dump(fd, AF_INET6, 2, info);
    if (a < 0 || b < 0) {
        perror("dump");
        return 1;
    }
    printf("%ld\n", a + b);
    return 0;
}
