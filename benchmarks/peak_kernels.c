/* Peak-throughput loops for benchmarks/peak.py: each runs `iters` iterations of ACC independent
 * multiply-accumulate chains on registers and returns the sum of all accumulator lanes, which
 * grows by MACS * a * b per iteration for constant operands a, b (tests/test_peak.py checks it;
 * it also keeps the compiler from dropping the work). MACs per iteration: the *_MACS constants.
 * Accumulator j starts at j: chains that start equal are computed once by the compiler. */
#include <stdint.h>

#define ACC 12 /* independent accumulators: more than latency x throughput of any unit here */
/* Inline asm where GCC 12 otherwise copies each destructive accumulator through a second register
 * every iteration (two moves per instruction). */
/* Makes the compiler forget the value of v each iteration, so that products of loop-invariant
 * operands are not hoisted out of the loop (it emits no instruction). */
#define UNROLLED _Pragma("GCC unroll 16") /* keeps the accumulators in registers */
#define OPAQUE(v, constraint) __asm__ volatile("" : "+" constraint(v))

#if defined(__x86_64__)
#include <immintrin.h>

const int VNNI_MACS = ACC * 64;  /* vpdpbusd zmm: 64 u8 x s8 products */
#define ACC8 8 /* AVX2 has 16 ymm registers: 8 accumulators + operands + temporaries */
const int AVX2_I8_MACS = ACC8 * 32; /* vpmaddubsw ymm: 32 products (vpmaddwd by ones adds none) */
const int AVX512_F32_MACS = ACC * 16;
const int AVX2_F32_MACS = ACC * 8;

__attribute__((target("avx512f,avx512bw,avx512vnni")))
int64_t vnni_u8s8(int64_t iters, const uint8_t *a, const int8_t *b) {
    __m512i va = _mm512_loadu_si512(a), vb = _mm512_loadu_si512(b), acc[ACC];
    UNROLLED for (int j = 0; j < ACC; j++) acc[j] = _mm512_set1_epi32(j);
    for (int64_t i = 0; i < iters; i++)
        UNROLLED for (int j = 0; j < ACC; j++)
            __asm__("vpdpbusd %2, %1, %0" : "+v"(acc[j]) : "v"(va), "v"(vb));
    __m512i s = acc[0];
    UNROLLED for (int j = 1; j < ACC; j++) s = _mm512_add_epi32(s, acc[j]);
    return _mm512_reduce_add_epi32(s);
}

__attribute__((target("avx2")))
int64_t avx2_u8s8(int64_t iters, const uint8_t *a, const int8_t *b) {
    __m256i va = _mm256_loadu_si256((const __m256i *)a), vb = _mm256_loadu_si256((const __m256i *)b);
    __m256i ones = _mm256_set1_epi16(1), acc[ACC8];
    UNROLLED for (int j = 0; j < ACC8; j++) acc[j] = _mm256_set1_epi32(j);
    for (int64_t i = 0; i < iters; i++)
        UNROLLED for (int j = 0; j < ACC8; j++) {
            __m256i t;
            __asm__("vpmaddubsw %[b], %[a], %[t]\n\t"
                    "vpmaddwd %[one], %[t], %[t]\n\t"
                    "vpaddd %[t], %[acc], %[acc]"
                    : [acc] "+x"(acc[j]), [t] "=&x"(t)
                    : [a] "x"(va), [b] "x"(vb), [one] "x"(ones));
        }
    __m256i s = acc[0];
    UNROLLED for (int j = 1; j < ACC8; j++) s = _mm256_add_epi32(s, acc[j]);
    int32_t out[8];
    _mm256_storeu_si256((__m256i *)out, s);
    int64_t total = 0;
    for (int k = 0; k < 8; k++) total += out[k];
    return total;
}

__attribute__((target("avx512f")))
int64_t avx512_f32(int64_t iters, const float *a, const float *b) {
    __m512 va = _mm512_loadu_ps(a), vb = _mm512_loadu_ps(b), acc[ACC];
    UNROLLED for (int j = 0; j < ACC; j++) acc[j] = _mm512_set1_ps((float)j);
    for (int64_t i = 0; i < iters; i++)
        UNROLLED for (int j = 0; j < ACC; j++) acc[j] = _mm512_fmadd_ps(va, vb, acc[j]);
    __m512 s = acc[0];
    UNROLLED for (int j = 1; j < ACC; j++) s = _mm512_add_ps(s, acc[j]);
    return (int64_t)_mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma")))
int64_t avx2_f32(int64_t iters, const float *a, const float *b) {
    __m256 va = _mm256_loadu_ps(a), vb = _mm256_loadu_ps(b), acc[ACC];
    UNROLLED for (int j = 0; j < ACC; j++) acc[j] = _mm256_set1_ps((float)j);
    for (int64_t i = 0; i < iters; i++)
        UNROLLED for (int j = 0; j < ACC; j++) acc[j] = _mm256_fmadd_ps(va, vb, acc[j]);
    __m256 s = acc[0];
    UNROLLED for (int j = 1; j < ACC; j++) s = _mm256_add_ps(s, acc[j]);
    float out[8];
    _mm256_storeu_ps(out, s);
    double total = 0;
    for (int k = 0; k < 8; k++) total += out[k];
    return (int64_t)total;
}


/* AMX (Intel's tile matrix unit): tdpbusd multiplies a 16 x 64 u8 tile by a 64 x 16 s8 tile
 * into 16 x 16 int32 accumulators, exactly as vpdpbusd does per lane (16,384 MACs). Linux hands
 * out the tile state only on request (arch_prctl); a kernel that does not grant it makes this
 * function return AMX_REFUSED. */
#include <sys/syscall.h>
#include <unistd.h>
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18
#define AMX_ACC 4 /* accumulator tiles (of 8): tdpbusd's latency over its issue interval */
const int AMX_MACS = AMX_ACC * 16 * 16 * 64;
const int64_t AMX_REFUSED = INT64_MIN;

struct amx_config {
    uint8_t palette, start_row, reserved[14];
    uint16_t bytes_per_row[16];
    uint8_t rows[16];
};

__attribute__((target("amx-tile,amx-int8")))
int64_t amx_u8s8(int64_t iters, const uint8_t *a, const int8_t *b) {
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) return AMX_REFUSED;
    struct amx_config config = {.palette = 1};
    for (int t = 0; t < AMX_ACC + 2; t++) config.bytes_per_row[t] = 64, config.rows[t] = 16;
    _tile_loadconfig(&config);
    int32_t start[AMX_ACC][16];
    for (int j = 0; j < AMX_ACC; j++)
        for (int k = 0; k < 16; k++) start[j][k] = j;
    /* Stride 0: every row of a tile is the same 64 bytes (of start[j], of a, of b). */
    _tile_loadd(0, start[0], 0);
    _tile_loadd(1, start[1], 0);
    _tile_loadd(2, start[2], 0);
    _tile_loadd(3, start[3], 0);
    _tile_loadd(4, a, 0);
    _tile_loadd(5, b, 0);
    for (int64_t i = 0; i < iters; i++) {
        _tile_dpbusd(0, 4, 5);
        _tile_dpbusd(1, 4, 5);
        _tile_dpbusd(2, 4, 5);
        _tile_dpbusd(3, 4, 5);
    }
    int32_t out[AMX_ACC][16][16];
    _tile_stored(0, out[0], 64);
    _tile_stored(1, out[1], 64);
    _tile_stored(2, out[2], 64);
    _tile_stored(3, out[3], 64);
    _tile_release();
    int64_t total = 0;
    for (int j = 0; j < AMX_ACC; j++)
        for (int r = 0; r < 16; r++)
            for (int k = 0; k < 16; k++) total += out[j][r][k];
    return total;
}

#elif defined(__aarch64__)
#include <arm_neon.h>

const int SDOT_MACS = ACC * 16;  /* sdot v.4s: 16 s8 x s8 products */
const int SMULL_MACS = ACC * 16; /* smull + smull2 + 2 sadalp: 16 products */
const int NEON_F32_MACS = ACC * 4;

__attribute__((target("arch=armv8.2-a+dotprod")))
int64_t sdot_s8s8(int64_t iters, const int8_t *a, const int8_t *b) {
    int8x16_t va = vld1q_s8(a), vb = vld1q_s8(b);
    int32x4_t acc[ACC];
    UNROLLED for (int j = 0; j < ACC; j++) acc[j] = vdupq_n_s32(j);
    for (int64_t i = 0; i < iters; i++)
        UNROLLED for (int j = 0; j < ACC; j++) acc[j] = vdotq_s32(acc[j], va, vb);
    int32x4_t s = acc[0];
    UNROLLED for (int j = 1; j < ACC; j++) s = vaddq_s32(s, acc[j]);
    return vaddvq_s32(s);
}

int64_t smull_s8s8(int64_t iters, const int8_t *a, const int8_t *b) {
    int8x16_t va = vld1q_s8(a), vb = vld1q_s8(b);
    int32x4_t acc[ACC];
    UNROLLED for (int j = 0; j < ACC; j++) acc[j] = vdupq_n_s32(j);
    for (int64_t i = 0; i < iters; i++)
        UNROLLED for (int j = 0; j < ACC; j++) {
            OPAQUE(va, "w");
            acc[j] = vpadalq_s16(acc[j], vmull_s8(vget_low_s8(va), vget_low_s8(vb)));
            acc[j] = vpadalq_s16(acc[j], vmull_high_s8(va, vb));
        }
    int32x4_t s = acc[0];
    UNROLLED for (int j = 1; j < ACC; j++) s = vaddq_s32(s, acc[j]);
    return vaddvq_s32(s);
}

int64_t neon_f32(int64_t iters, const float *a, const float *b) {
    float32x4_t va = vld1q_f32(a), vb = vld1q_f32(b), acc[ACC];
    UNROLLED for (int j = 0; j < ACC; j++) acc[j] = vdupq_n_f32((float)j);
    for (int64_t i = 0; i < iters; i++)
        UNROLLED for (int j = 0; j < ACC; j++) acc[j] = vfmaq_f32(acc[j], va, vb);
    float32x4_t s = acc[0];
    UNROLLED for (int j = 1; j < ACC; j++) s = vaddq_f32(s, acc[j]);
    return (int64_t)vaddvq_f32(s);
}
#endif
