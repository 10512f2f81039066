/* Writing whole pages of recycled output memory past the cache (see pages.f90). */
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* dst[0:n] = src[0:n]. Where the CPU has non-temporal stores (x86-64: SSE2) and dst is
   16-byte aligned, they write it without reading it into the cache first, which for a
   page that is not in the cache halves the memory traffic. Elsewhere a plain copy. The
   stores are weakly ordered: atomdesc_stream_fence must follow before other threads may
   read dst. */
void atomdesc_stream_words(const double *src, double *dst, int64_t n)
{
#if defined(__SSE2__)
    if (((uintptr_t)dst & 15) == 0) {
        int64_t k = 0;
        for (; k + 1 < n; k += 2)
            _mm_stream_pd(dst + k, _mm_loadu_pd(src + k));
        if (k < n)
            dst[k] = src[k];
        return;
    }
#endif
    memcpy(dst, src, (size_t)n * sizeof(double));
}

/* Orders every non-temporal store before it ahead of the thread's later stores. Once
   per batch of pages, not per page: a fence waits for the stores to drain, so one per
   page keeps the next page's work from overlapping them. */
void atomdesc_stream_fence(void)
{
#if defined(__SSE2__)
    _mm_sfence();
#endif
}
