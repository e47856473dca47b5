/* resolve: name resolution as a static glibc program does it (issue 19):
 * getaddrinfo through NSS ("hosts: files dns" in /etc/nsswitch.conf):
 * "localhost" from /etc/hosts, and a name only a DNS server knows, asked
 * of the server at 127.0.0.1:PORT (the test's stub; the program points
 * glibc's resolver at it through _res, as /etc/resolv.conf would).
 * Prints what it got, to compare a confined run with a native one
 * (monitor/tests/resolve.rs).
 *
 * usage: resolve PORT NAME */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static void lookup(const char *name)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    int r = getaddrinfo(name, "80", &hints, &res);
    if (r != 0) {
        printf("%s: %s\n", name, gai_strerror(r));
        return;
    }
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        char ip[INET6_ADDRSTRLEN];
        struct sockaddr_in *s = (struct sockaddr_in *)a->ai_addr;
        inet_ntop(AF_INET, &s->sin_addr, ip, sizeof ip);
        printf("%s: %s port %d\n", name, ip, ntohs(s->sin_port));
    }
    freeaddrinfo(res);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: resolve PORT NAME\n");
        return 2;
    }
    lookup("localhost");
    /* The resolver: 127.0.0.1:PORT only, one try, a short timeout. */
    if (res_init() != 0) {
        printf("res_init failed\n");
        return 1;
    }
    _res.nscount = 1;
    _res.nsaddr_list[0].sin_family = AF_INET;
    _res.nsaddr_list[0].sin_port = htons(atoi(argv[1]));
    _res.nsaddr_list[0].sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    _res.retrans = 5;
    _res.retry = 2;
    lookup(argv[2]);
    lookup("nowhere.cabin-test.invalid");
    return 0;
}
