/* rusage: runs one command and prints its wait4() rusage, for benches/measure.py.
 *
 *   rusage CMD [ARG...]
 *   -> stdout: "<utime_us> <stime_us> <maxrss_kib> <exit> <voluntary_csw>"
 *
 * Voluntary context switches count the sleeps of a polling loop (compare.sh
 * uses them to count the polls of `prestop-wait wait`).
 *
 * The command's stdin, stdout and stderr are /dev/null. Why a C program and not
 * Python's os.wait4 directly: on exec the kernel folds the *old* address
 * space's peak RSS into the new process's ru_maxrss, and a child forked from
 * Python starts with Python's ~10 MiB mapped. Forked from this small static
 * program instead, the floor is this program's own few hundred KiB (measured
 * and printed by compare.sh as the "floor" row).
 * Build: cc -O2 -static -o rusage benches/rusage.c
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: rusage CMD [ARG...]\n");
        return 2;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 2;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
        }
        execvp(argv[1], argv + 1);
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) {
        perror("wait4");
        return 2;
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    printf("%ld %ld %ld %d %ld\n",
           (long)ru.ru_utime.tv_sec * 1000000L + ru.ru_utime.tv_usec,
           (long)ru.ru_stime.tv_sec * 1000000L + ru.ru_stime.tv_usec,
           ru.ru_maxrss, code, ru.ru_nvcsw);
    return 0;
}
