/* Max pooling for the CPU gradient program (models/cpu/program.py), channels_last, float32 and bfloat16.
 *
 * Built at first use by models/cpu/native.py with the machine's C compiler (-O3 -march=native -fopenmp) and called
 * through ctypes; OpenMP resolves to the runtime PyTorch already loaded, so both share its threads.
 *
 * The results are ATen's bit for bit (tests/models/test_native.py holds them to it): the same maxima, the same
 * winner in a tie (the first in row-major window order; a NaN always wins), and in the backward the same sums in
 * the same order (a bfloat16 gradient is rounded after every addition, as ATen's += on BFloat16 does). What
 * differs is the work: the winner is kept as its offset in the window (one byte, not ATen's int64 index), and the
 * backward gathers into each input position from the windows that hold it, in parallel and written once, where
 * ATen zeroes the gradient and scatters into it on one thread for a single image.
 *
 * Layout: x (N, H, W, C) and y, arg (N, OH, OW, C), all contiguous; window (oh, ow) starts at
 * (oh * sh - ph, ow * sw - pw) and spans kh x kw (positions outside the input never win); arg holds
 * a * kw + b for the winner at window row a, column b. */
#include <math.h>
#include <stdint.h>
#include <string.h>

typedef float vf __attribute__((vector_size(64)));    /* 16 floats */
typedef int32_t vi __attribute__((vector_size(64)));
typedef uint32_t vu __attribute__((vector_size(64)));
typedef uint16_t vh __attribute__((vector_size(32)));  /* 16 bfloat16 bit patterns */
typedef int8_t vb __attribute__((vector_size(16)));    /* 16 window offsets */
typedef int16_t vs32 __attribute__((vector_size(64))); /* 32 bfloat16 bit patterns, or their order keys */
typedef int8_t vb32 __attribute__((vector_size(32)));  /* 32 window offsets */

int inceptionism_maxpool_version(void) { return 1; }

static inline vf load_f32(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void store_f32(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline vf load_bf16(const uint16_t *p) {
    vh h; memcpy(&h, p, sizeof h);
    vu u = __builtin_convertvector(h, vu) << 16;
    vf f; memcpy(&f, &u, sizeof f); return f;
}
static inline void store_bf16(uint16_t *p, vf v) { /* v holds bfloat16 values: the high halves are exact */
    vu u; memcpy(&u, &v, sizeof u);
    vh h = __builtin_convertvector(u >> 16, vh); memcpy(p, &h, sizeof h);
}
static inline vf round_f32(vf v) { return v; }
static inline vf round_bf16(vf v) { /* to the nearest even bfloat16 (a NaN stays a NaN: its low half is 0) */
    vu u; memcpy(&u, &v, sizeof u);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    vf f; memcpy(&f, &u, sizeof f); return f;
}
static inline vf canonical_f32(vf v) { return v; }
static inline vf canonical_bf16(vf v) { /* a NaN as c10::BFloat16 rounds every NaN: 0x7fc0 */
    vi nan = v != v;
    return (vf)(((vi)v & ~nan) | (nan & ((vi){0} + 0x7fc00000)));
}

static inline float bf16_to_float(uint16_t h) { uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f; }
static inline float s_load_f32(const float *p) { return *p; }
static inline void s_store_f32(float *p, float v) { *p = v; }
static inline float s_load_bf16(const uint16_t *p) { return bf16_to_float(*p); }
static inline void s_store_bf16(uint16_t *p, float v) { uint32_t u; memcpy(&u, &v, 4); *p = (uint16_t)(u >> 16); }
static inline float s_round_f32(float v) { return v; }
static inline float s_round_bf16(float v) {
    if (v != v) return bf16_to_float(0x7fc0);
    uint32_t u; memcpy(&u, &v, 4);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&v, &u, 4); return v;
}

#define SHAPE long N, long H, long W, long C, long OH, long OW, long kh, long kw, long sh, long sw, long ph, long pw, int nt

/* The window of output (oh, ow): rows [h0, h0 + kh) and columns [w0, w0 + kw), clipped to the input. */
#define WINDOW                                                                                                   \
    long nn = r / OH, oh = r % OH;                                                                               \
    long h0 = oh * sh - ph, h1 = h0 + kh < H ? h0 + kh : H, hs = h0 < 0 ? 0 : h0;                                \
    long w0 = ow * sw - pw, w1 = w0 + kw < W ? w0 + kw : W, ws = w0 < 0 ? 0 : w0;                                \
    uint8_t first = (uint8_t)((hs - h0) * kw + (ws - w0));                                                       \
    long out = (r * OW + ow) * C

/* One channel at a time: channels left over from the vector loops. */
#define FORWARD_SCALAR(SFX)                                                                                      \
    for (; c < C; c++) {                                                                                         \
        float m = -INFINITY; uint8_t a = first;                                                                  \
        for (long ih = hs; ih < h1; ih++)                                                                        \
            for (long iw = ws; iw < w1; iw++) {                                                                  \
                float v = s_load_##SFX(x + ((nn * H + ih) * W + iw) * C + c);                                    \
                if (v > m || v != v) { m = v; a = (uint8_t)((ih - h0) * kw + (iw - w0)); }                       \
            }                                                                                                    \
        s_store_##SFX(y + out + c, m); arg[out + c] = a;                                                         \
    }

void max_pool_f32(const float *restrict x, float *restrict y, uint8_t *restrict arg, SHAPE) {
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (long r = 0; r < N * OH; r++)
        for (long ow = 0; ow < OW; ow++) {
            WINDOW;
            long c = 0;
            for (; c + 16 <= C; c += 16) {
                vf m = (vf){0} - INFINITY; vb a = (vb){0} + (int8_t)first;
                for (long ih = hs; ih < h1; ih++)
                    for (long iw = ws; iw < w1; iw++) {
                        vf v = load_f32(x + ((nn * H + ih) * W + iw) * C + c);
                        vi take = (v > m) | (v != v);
                        vb take8 = __builtin_convertvector(take, vb);
                        vb k = (vb){0} + (int8_t)((ih - h0) * kw + (iw - w0));
                        m = (vf)(((vi)v & take) | ((vi)m & ~take));
                        a = (k & take8) | (a & ~take8);
                    }
                store_f32(y + out + c, m); memcpy(arg + out + c, &a, sizeof a);
            }
            FORWARD_SCALAR(f32)
        }
}

/* bfloat16 compares on 16-bit order keys, 32 channels a vector: the magnitude, negated where the sign is set
 * (so -0 ties +0, as in float). A magnitude above infinity's is a NaN: it always wins, and its key (its
 * magnitude, whatever its sign) stays above every number's, so no number beats it. The bits kept are the
 * input's own. */
void max_pool_bf16(const uint16_t *restrict x, uint16_t *restrict y, uint8_t *restrict arg, SHAPE) {
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (long r = 0; r < N * OH; r++)
        for (long ow = 0; ow < OW; ow++) {
            WINDOW;
            long c = 0;
            for (; c + 32 <= C; c += 32) {
                vs32 key = (vs32){0} - 0x7f80, bits = (vs32){0} + (int16_t)0xff80; /* -inf */
                vb32 a = (vb32){0} + (int8_t)first;
                for (long ih = hs; ih < h1; ih++)
                    for (long iw = ws; iw < w1; iw++) {
                        vs32 b; memcpy(&b, x + ((nn * H + ih) * W + iw) * C + c, sizeof b);
                        vs32 mag = b & 0x7fff, nan = mag > 0x7f80, neg = (b >> 15) & ~nan;
                        vs32 s = (mag ^ neg) - neg;
                        vs32 take = (s > key) | nan;
                        vb32 take8 = __builtin_convertvector(take, vb32);
                        vb32 k = (vb32){0} + (int8_t)((ih - h0) * kw + (iw - w0));
                        key = (s & take) | (key & ~take);
                        bits = (b & take) | (bits & ~take);
                        a = (k & take8) | (a & ~take8);
                    }
                memcpy(y + out + c, &bits, sizeof bits); memcpy(arg + out + c, &a, sizeof a);
            }
            FORWARD_SCALAR(bf16)
        }
}

/* The input gradient at row ih (of image nn), position iw: the sum, in row-major window order, of the output
 * gradients of the windows whose winner it is, from +0 and rounded after each addition (ATen's zeroed gradient
 * and +=). The first addition is exact (0 + g), so it is not rounded; NaNs take c10's bits when stored. */
#define BACKWARD(NAME, T, SFX)                                                                                   \
    void NAME(const T *restrict gy, const uint8_t *restrict arg, T *restrict gx, SHAPE) {                        \
        _Pragma("omp parallel for schedule(static) num_threads(nt) if (nt > 1)")                                 \
        for (long r = 0; r < N * H; r++) {                                                                       \
            long nn = r / H, ih = r % H;                                                                         \
            long olo = ih + ph - kh + 1, ohi = (ih + ph) / sh;                                                   \
            olo = olo <= 0 ? 0 : (olo + sh - 1) / sh; ohi = ohi < OH - 1 ? ohi : OH - 1;                         \
            for (long iw = 0; iw < W; iw++) {                                                                    \
                long wlo = iw + pw - kw + 1, whi = (iw + pw) / sw;                                               \
                wlo = wlo <= 0 ? 0 : (wlo + sw - 1) / sw; whi = whi < OW - 1 ? whi : OW - 1;                     \
                T *px = gx + (r * W + iw) * C;                                                                   \
                long c = 0;                                                                                      \
                for (; c + 16 <= C; c += 16) {                                                                   \
                    vf acc = (vf){0}; int fresh = 1;                                                             \
                    for (long oh = olo; oh <= ohi; oh++)                                                         \
                        for (long ow = wlo; ow <= whi; ow++) {                                                   \
                            vb k = (vb){0} + (int8_t)((ih - (oh * sh - ph)) * kw + (iw - (ow * sw - pw)));       \
                            long o = ((nn * OH + oh) * OW + ow) * C + c;                                         \
                            vb a; memcpy(&a, arg + o, sizeof a);                                                 \
                            vi hit = __builtin_convertvector(a == k, vi);                                        \
                            vf sum = acc + load_##SFX(gy + o);                                                   \
                            sum = fresh ? sum : round_##SFX(sum);                                                \
                            acc = (vf)(((vi)sum & hit) | ((vi)acc & ~hit));                                      \
                            fresh = 0;                                                                           \
                        }                                                                                        \
                    store_##SFX(px + c, canonical_##SFX(acc));                                                   \
                }                                                                                                \
                for (; c < C; c++) {                                                                             \
                    float acc = 0.0f;                                                                            \
                    for (long oh = olo; oh <= ohi; oh++)                                                         \
                        for (long ow = wlo; ow <= whi; ow++) {                                                   \
                            uint8_t k = (uint8_t)((ih - (oh * sh - ph)) * kw + (iw - (ow * sw - pw)));           \
                            long o = ((nn * OH + oh) * OW + ow) * C + c;                                         \
                            if (arg[o] == k) acc = s_round_##SFX(acc + s_load_##SFX(gy + o));                   \
                        }                                                                                        \
                    s_store_##SFX(px + c, acc);                                                                  \
                }                                                                                                \
            }                                                                                                    \
        }                                                                                                        \
    }

BACKWARD(max_pool_backward_f32, float, f32)
BACKWARD(max_pool_backward_bf16, uint16_t, bf16)
