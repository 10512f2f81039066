/* How fast can one thread write whole 4 KiB pages of memory it already holds?

   The floor under writing SOAP's strain rows on many-species data (docs/benchmarks.md,
   "Where g2's strain time goes"): each call writes some 56 000 recycled pages whole with
   non-temporal stores (fortran/pages_stream.c). This writes N such pages, spread over a
   3 GB mapping with a stride, from a buffer in the cache, with non-temporal stores
   (one fence after every page, then one after all of them, as the kernel now does) and
   with memcpy, and prints the best of five.

     cc -O2 -o /tmp/page_write_floor tests/benchmarks/page_write_floor.c
     /tmp/page_write_floor [pages=57000] [stride=12]

   x86-64 only (SSE2 non-temporal stores). */
#define _GNU_SOURCE
#include <emmintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define WORDS 512 /* doubles in a 4 KiB page */

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static void stream_page(double *dst, const double *src)
{
    for (int k = 0; k < WORDS; k += 2)
        _mm_stream_pd(dst + k, _mm_loadu_pd(src + k));
}

int main(int argc, char **argv)
{
    long n_pages = argc > 1 ? atol(argv[1]) : 57000;
    long stride = argc > 2 ? atol(argv[2]) : 12;
    size_t size = (size_t)3000 << 20;
    long mapping_pages = (long)(size / 4096);
    if (n_pages <= 0 || stride <= 0 || n_pages > mapping_pages) {
        fprintf(stderr, "pages must be in 1..%ld and stride positive\n", mapping_pages);
        return 1;
    }
    double *memory = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    madvise(memory, size, MADV_NOHUGEPAGE); /* as the zeroed outputs */
    long *page = malloc(n_pages * sizeof *page);
    double source[WORDS];
    for (int k = 0; k < WORDS; k++)
        source[k] = k;
    for (long p = 0; p < n_pages; p++) {
        page[p] = (p * stride) % mapping_pages;
        memset(memory + page[p] * WORDS, 1, 4096); /* held, as recycled pages are */
    }
    double best_fenced = 1e30, best_stream = 1e30, best_copy = 1e30;
    for (int round = 0; round < 5; round++) {
        double t0 = seconds();
        for (long p = 0; p < n_pages; p++) {
            stream_page(memory + page[p] * WORDS, source);
            _mm_sfence();
        }
        double t1 = seconds();
        for (long p = 0; p < n_pages; p++)
            stream_page(memory + page[p] * WORDS, source);
        _mm_sfence();
        double t2 = seconds();
        for (long p = 0; p < n_pages; p++)
            memcpy(memory + page[p] * WORDS, source, 4096);
        double t3 = seconds();
        if (t1 - t0 < best_fenced)
            best_fenced = t1 - t0;
        if (t2 - t1 < best_stream)
            best_stream = t2 - t1;
        if (t3 - t2 < best_copy)
            best_copy = t3 - t2;
    }
    printf("%ld pages, stride %ld: non-temporal, fenced per page %.1f ms, once %.1f ms "
           "(%.1f GB/s); memcpy %.1f ms\n",
           n_pages, stride, 1e3 * best_fenced, 1e3 * best_stream,
           n_pages * 4096.0 / best_stream / 1e9, 1e3 * best_copy);
    free(page);
    munmap(memory, size);
    return 0;
}
