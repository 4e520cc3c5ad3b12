/* benches/fdwalk.c: the floor for naming the processes that hold sockets.
 *
 * Reads every fd link of every process in /proc, the least any tool that
 * names holders must do (`ss -p`, `netstat -p`, `prestop-wait check` when it
 * can see the holders): one readdir pass over /proc/<pid>/fd and one
 * readlinkat per entry, nothing parsed or kept. compare.sh adds its CPU to
 * that of `cat` of both tables to get the floor for `check` in scenarios
 * where a visible process holds the sockets.
 */
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    DIR *proc = opendir("/proc");
    if (!proc) {
        perror("fdwalk: /proc");
        return 2;
    }
    struct dirent *p;
    long fds = 0, sockets = 0;
    char path[64], target[64];
    while ((p = readdir(proc))) {
        if (!isdigit((unsigned char)p->d_name[0]))
            continue;
        snprintf(path, sizeof path, "/proc/%s/fd", p->d_name);
        int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
            continue;
        DIR *d = fdopendir(dfd);
        if (!d) {
            close(dfd);
            continue;
        }
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            ssize_t n = readlinkat(dfd, e->d_name, target, sizeof target);
            fds++;
            if (n > 8 && memcmp(target, "socket:[", 8) == 0)
                sockets++;
        }
        closedir(d);
    }
    closedir(proc);
    printf("%ld fds, %ld sockets\n", fds, sockets);
    return 0;
}
