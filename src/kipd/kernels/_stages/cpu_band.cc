// The full-resolution stage of the ConvNet kernel, fused for the CPU (XLA FFI handlers).
//
// The stage is num_relus x (3x3 'SAME' conv, ReLU) on the covariance band of
// kipd/kernels/_state.py, NTK parameterization: band entry (pair, offset D, position p)
// is cov(x1[p], x2[p + D]). A conv keeps the offset D and a ReLU acts entry by entry, so
// each offset plane of each pair runs the whole stage on its own: here a plane's
// H x W tile stays in L1/L2 from the raw images to the last ReLU, and only the final
// outputs go to memory. cpu_build.py builds and loads this file, cpu.py binds and
// documents it; the semantics are those of serial(conv, relu, ...).kernel(input_state(...))
// in _layers.py / _relu.py.
//
// Pooling fused (attribute pool). When the 2x2 average pooling follows the stage (the
// ConvNet), each plane's final tile is added into its pair's pooled band while still in
// cache: the full band (230k entries per 32x32 pair) never reaches memory, only the
// pooled one (18x smaller), and the backward reads the pooled cotangent. A pair's planes
// are added in a fixed order by one thread, so the pooled band of (x, x) computed as a
// diagonal pair equals the grid's, bit for bit (the next ReLU's exact c == 1 needs it).
//
// Floating point. Built with -ffp-contract=off and without fast-math, so every + - * /
// and sqrt below is one IEEE float32 operation in the order written. The results agree
// with the XLA path's expressions (the same Cephes polynomial for pi - arccos) to float32
// rounding, not bit for bit: the conv's 1/9 is folded into w2 / 9, and the ReLU takes
// s = sqrt(v1) sqrt(v2) and c = nngp (1 / sqrt(v1) 1 / sqrt(v2)) from roots of the
// variances computed once per call (PaddedVariances), two products per entry where XLA's
// sqrt(v1 v2) and nngp / s are a square root and a division (with the division by 9,
// the costliest operations of an entry). Exactness: where the covariance equals both
// variances, s = v and c = 1 exactly. The variance pass (Mode::kSelf) and the D = 0 plane
// of the band (Mode::kBand) execute the very same operations on the same values, so the
// grid's entry of a pixel with itself is the recorded variance, bit for bit, and its
// correlation exactly 1.
//
// Band input. The layers after a pooling ([conv, ReLU] x k, then the next pooling) are
// the same per-plane computation on a smaller band: the input tile of a plane is then read
// from the pair's input band (the previous stage's pooled output, NNGP and NTK) instead
// of being formed from the images (Geometry::band_input). The backward writes each input
// plane's cotangent (a plane's input feeds that plane only) instead of adding image
// gradients. The variance pass reads the offset-0 plane of an image's own band, and the
// grid's plane D = 0 of the pair (x, x) reads the same plane bit for bit (the previous
// stage's pooled band of a diagonal pair equals the grid's), so c == 1 stays exact at
// every stage.
//
// Work saved. Only the rows of a plane whose second position p + D lies inside the
// image are computed (the others are zero); columns are computed in whole vectors of
// kLanes and masked, which keeps every inner loop a plain vectorizable loop.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>
#endif

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr double kPiDouble = 3.14159265358979323846;
// Rounded from double as JAX rounds a Python float constant to float32.
const float kPi = static_cast<float>(kPiDouble);
const float kHalfPi = static_cast<float>(kPiDouble / 2.0);
const float kInv2Pi = static_cast<float>(1.0 / (2.0 * kPiDouble));
const float kInv2PiSquared = kInv2Pi * kInv2Pi;
const float kPoly0 = static_cast<float>(4.2163199048e-2);
const float kPoly1 = static_cast<float>(2.4181311049e-2);
const float kPoly2 = static_cast<float>(4.5470025998e-2);
const float kPoly3 = static_cast<float>(7.4953002686e-2);
const float kPoly4 = static_cast<float>(1.6666752422e-1);

// Rows of a plane are computed over W rounded up to kLanes floats and masked past the
// valid columns, so every row loop runs over whole vectors.
constexpr int64_t kLanes = 16;
// Zero floats around every tile row: the zero padding the box filter reads at
// columns -1 and W, and room for the rounded-up width.
constexpr int64_t kGuard = 16;

// The row loops use GCC vector extensions, one native register per Vec: written as plain
// float code, GCC 12 if-converts the arc-cosine's selects by computing the polynomial
// once per branch under masks; as vector code each operation is issued exactly once.
#if defined(__AVX512F__)
constexpr int64_t kVec = 16;
#elif defined(__AVX__)
constexpr int64_t kVec = 8;
#else
constexpr int64_t kVec = 4;
#endif
static_assert(kLanes % kVec == 0, "rows must hold whole vectors");
static_assert(kGuard >= kVec, "RollingBox reads a whole vector on either side of a row");
// aligned(4): rows are read at column offsets -1 and +1 (box filter), and shifted by D.
typedef float Vec __attribute__((vector_size(kVec * sizeof(float)), aligned(4), may_alias));
typedef int32_t Bits __attribute__((vector_size(kVec * sizeof(float)), aligned(4), may_alias));

inline Vec load(const float* p) { return *reinterpret_cast<const Vec*>(p); }
inline void store(float* p, Vec v) { *reinterpret_cast<Vec*>(p) = v; }
inline Vec splat(float x) { return Vec{} + x; }

inline Vec vsqrt(Vec v) {
  Vec r;  // one vector square root instruction (IEEE, correctly rounded)
  for (int64_t k = 0; k < kVec; ++k) r[k] = __builtin_sqrtf(v[k]);
  return r;
}

// Three rows of a tile (h - 1, h, h + 1; a zero row where outside the plane).
struct Rows3 {
  const float* up;
  const float* mid;
  const float* down;
};

// The 3x3 box sum of three rows in the XLA box filter's order -- vertical (up + mid) +
// down, then horizontal (left + mid) + right -- one vector of columns at a time, left to
// right: each column vector's vertical sum is computed once and kept in registers for
// its neighbours (no row of sums goes through memory). The horizontal neighbours are
// shuffled out of whole vectors: the rows were stored in whole vectors, and loads at
// c -/+ 1 would straddle two pending stores, which defeats store-to-load forwarding.
// Reads columns [-kVec, n + kVec) of the rows (guards, zero).
#if defined(__AVX512F__)
#define KIPD_LEFT {15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30}
#define KIPD_RIGHT {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
#elif defined(__AVX__)
#define KIPD_LEFT {7, 8, 9, 10, 11, 12, 13, 14}
#define KIPD_RIGHT {1, 2, 3, 4, 5, 6, 7, 8}
#else
#define KIPD_LEFT {3, 4, 5, 6}
#define KIPD_RIGHT {1, 2, 3, 4}
#endif
class RollingBox {
 public:
  explicit RollingBox(const Rows3& rows)
      : rows_(rows), prev_(vertical(-kVec)), here_(vertical(0)) {}

  // The box sum at columns [c, c + kVec); call with c = 0, kVec, 2 kVec, ...
  Vec next(int64_t c) {
    const Vec ahead = vertical(c + kVec);
    const Vec left = __builtin_shuffle(prev_, here_, Bits KIPD_LEFT);
    const Vec right = __builtin_shuffle(here_, ahead, Bits KIPD_RIGHT);
    const Vec box = (left + here_) + right;
    prev_ = here_;
    here_ = ahead;
    return box;
  }

 private:
  Vec vertical(int64_t c) const {
    return (load(rows_.up + c) + load(rows_.mid + c)) + load(rows_.down + c);
  }

  Rows3 rows_;
  Vec prev_, here_;
};

inline Vec vabs(Vec v) { return reinterpret_cast<Vec>(reinterpret_cast<Bits>(v) & 0x7fffffff); }

// jnp.maximum(x, 0) and jnp.clip(x, -1, 1) (as std::max / std::min order their operands).
inline Vec max_zero(Vec x) { return x < 0.0f ? Vec{} : x; }
inline Vec clip_unit(Vec c) {
  const Vec low = c < -1.0f ? splat(-1.0f) : c;
  return 1.0f < low ? splat(1.0f) : low;
}

// pi - arccos(c) for c in [-1, 1]: _relu._pi_minus_arccos, operation for operation
// (both branches computed and selected, as jnp.where does).
inline Vec pi_minus_arccos(Vec c) {
  const Vec magnitude = vabs(c);
  const auto near_one = magnitude > 0.5f;
  const Vec z = near_one ? 0.5f * (1.0f - magnitude) : magnitude * magnitude;
  const Vec s = near_one ? vsqrt(z) : magnitude;
  const Vec poly = (((kPoly0 * z + kPoly1) * z + kPoly2) * z + kPoly3) * z + kPoly4;
  const Vec arcsin_s = s + s * z * poly;
  const Vec arccos_magnitude = near_one ? 2.0f * arcsin_s : kHalfPi - arcsin_s;
  return c < 0.0f ? arccos_magnitude : kPi - arccos_magnitude;
}

// Shapes, constants and memory layouts of one call.
struct Geometry {
  int64_t H, W, C, L, R, A, planes;
  int64_t Wp;      // W rounded up to kLanes: the columns computed per row
  int64_t margin;  // columns of fill on each side of a padded image row
  int64_t Wpad;    // W + 2 margin: row length of padded images, variances, accumulators
  int64_t S;       // tile row stride
  int64_t tile;    // floats per tile, guards included
  // With pool: the 2x2 average pooling after the stage (kernel.md, "Pooling fused"): its
  // image is Hc x Wc, its band radius Rc, Ac = 2 Rc + 1 offsets per axis.
  bool pool;
  int64_t Hc, Wc, Rc, Ac;
  float w2_ninth, b2;  // the conv's weight variance over its 3 x 3 taps, w2 / 9; b2
  // The input is a band (NNGP and NTK, A x A planes of H x W per pair), not images (C
  // unused): the stages after a pooling.
  bool band_input;

  Geometry(int64_t height, int64_t width, int64_t channels, int64_t relus, int64_t radius,
           float w2_, float b2_, bool pool_ = false, bool band_input_ = false)
      : H(height), W(width), C(channels), L(relus), R(radius), pool(pool_),
        w2_ninth(w2_ / 9.0f), b2(b2_), band_input(band_input_) {
    A = 2 * R + 1;
    Hc = H / 2;
    Wc = W / 2;
    Rc = (R - 1) / 2;
    Ac = 2 * Rc + 1;
    planes = A * A;
    Wp = (W + kLanes - 1) / kLanes * kLanes;
    // Row reads of the second image run over columns [dw, dw + Wp), |dw| <= R.
    margin = R + (Wp - W);
    Wpad = W + 2 * margin;
    S = Wp + kGuard;
    tile = kGuard + H * S + kGuard;
  }

  int64_t image_floats() const { return C * H * Wpad; }
  int64_t plane_floats() const { return H * W; }
  // Floats of one input of one pair (band input): the band planes.
  int64_t input_floats() const { return planes * H * W; }
  // Floats of one output of one pair: the band planes, or the pooled band.
  int64_t output_floats() const { return pool ? Ac * Ac * Hc * Wc : planes * H * W; }
  int64_t variance_floats() const { return L * H * Wpad; }
};

// NHWC images (n, H, W, C) -> per image C planes of H rows of Wpad floats, zero fill;
// the returned pointers address column 0 of row 0 of channel 0.
std::vector<float> pad_images(const float* x, int64_t n, const Geometry& g) {
  std::vector<float> out(n * g.image_floats() + 2 * g.margin, 0.0f);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t h = 0; h < g.H; ++h)
      for (int64_t w = 0; w < g.W; ++w)
        for (int64_t c = 0; c < g.C; ++c)
          out[i * g.image_floats() + (c * g.H + h) * g.Wpad + g.margin + w] =
              x[((i * g.H + h) * g.W + w) * g.C + c];
  return out;
}

// One side's variances in the padded layout, with their square roots and the
// reciprocals of those: the ReLU's s = sqrt(v1) sqrt(v2) and
// c = nngp (1 / sqrt(v1) 1 / sqrt(v2)) are then two products per entry instead of a square
// root and a division (conv_relu_row).
struct PaddedVariances {
  std::vector<float> var, root, inverse_root;
};

// Variances (n, L, H, W) -> per image L planes of H rows of Wpad floats. The fill 1
// keeps s and c finite where the mask then zeroes the entry.
PaddedVariances pad_variances(const float* v, int64_t n, const Geometry& g) {
  PaddedVariances out;
  out.var.assign(n * g.variance_floats() + 2 * g.margin, 1.0f);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t l = 0; l < g.L; ++l)
      for (int64_t h = 0; h < g.H; ++h)
        std::memcpy(&out.var[i * g.variance_floats() + (l * g.H + h) * g.Wpad + g.margin],
                    v + ((i * g.L + l) * g.H + h) * g.W, g.W * sizeof(float));
  out.root.resize(out.var.size());
  out.inverse_root.resize(out.var.size());
  for (size_t k = 0; k < out.var.size(); ++k) {
    out.root[k] = std::sqrt(out.var[k]);
    out.inverse_root[k] = 1.0f / out.root[k];
  }
  return out;
}

// One thread's tiles (zero-initialized; only columns [0, Wp) of rows [0, H) are ever
// written, so the guards stay zero).
struct Workspace {
  enum Tile { kNngpIn, kNtkIn, kNngpOut, kNtkOut, kGradNngp, kGradNtk, kErrNngp, kErrNtk,
              kFixedTiles };
  // Per ReLU, what its backward needs: input NTK, s, c (unclipped), k0, sin term.
  enum Saved { kSavedNtk, kSavedStd, kSavedCorr, kSavedK0, kSavedSine, kSavedPerRelu };

  const Geometry& g;
  std::vector<float> memory;
  float* colmask;   // Wp: 1 where p and p + D lie in the image (column-wise), else 0
  float* zero_row;  // a zero row read in place of rows outside the plane's valid rows
  float* record_row;  // kSelf: one row of a ReLU's variances

  explicit Workspace(const Geometry& geometry, bool with_saved) : g(geometry) {
    const int64_t tiles = kFixedTiles + (with_saved ? kSavedPerRelu * g.L : 0);
    const int64_t row = kGuard + g.S + kGuard;
    memory.assign(tiles * g.tile + 3 * row + kLanes, 0.0f);
    float* rows = memory.data() + tiles * g.tile;
    colmask = rows + kGuard;
    zero_row = rows + row + kGuard;
    record_row = rows + 2 * row + kGuard;
  }

  // Row 0, column 0 of tile k.
  float* tile(int64_t k) { return memory.data() + k * g.tile + kGuard; }
  float* saved(int64_t relu, int64_t what) {
    return tile(kFixedTiles + relu * kSavedPerRelu + what);
  }
};

// The row range [h0, h1) of a plane where p + D lies inside the image, its column mask,
// and whether the plane is all zero.
struct Plane {
  int64_t dh, dw, h0, h1;
  bool empty;

  Plane(const Geometry& g, Workspace& ws, int64_t dh_, int64_t dw_) : dh(dh_), dw(dw_) {
    h0 = std::max<int64_t>(0, -dh);
    h1 = std::min<int64_t>(g.H, g.H - dh);
    empty = h1 <= h0 || std::abs(dw) >= g.W;
    float* cm = ws.colmask;
    for (int64_t c = 0; c < g.Wp; ++c)
      cm[c] = (c < g.W && c + dw >= 0 && c + dw < g.W) ? 1.0f : 0.0f;
  }

  const float* row_or_zero(const float* tile, int64_t h, int64_t S, const float* zero) const {
    return (h >= h0 && h < h1) ? tile + h * S : zero;
  }

  // Rows h - 1, h, h + 1 of a tile, for a box filter at row h.
  Rows3 around(const float* tile, int64_t h, int64_t S, const float* zero) const {
    return Rows3{row_or_zero(tile, h - 1, S, zero), tile + h * S,
                 row_or_zero(tile, h + 1, S, zero)};
  }
};

// The 2x2 average pooling (stride 2, 'VALID') that follows the stage, fused: fine band entry
// (offset d, position p) feeds, per axis, coarse position P = p / 2 at coarse offset
// E = floor((d + p % 2) / 2) -- cov(pool1[P], pool2[P + E]) is the mean of the 16 fine
// entries cov(x1[2P + a], x2[2P + 2E + b]), a, b in {0, 1}, at fine offset 2E + b - a and
// position 2P + a -- so each fine entry feeds one coarse entry, or none (|E| > Rc, a
// dropped odd last row or column, or P + E outside the coarse image). A pair's pooled
// band is laid out [E_h][E_w][P_h][P_w].
inline int64_t floor_half(int64_t t) { return t >= 0 ? t / 2 : -((1 - t) / 2); }

// Where row h of a plane with row offset dh goes in its pair's pooled band
// ((E_h + Rc) Ac Hc Wc + P_h Wc), or -1 where it feeds nothing.
inline int64_t coarse_row(const Geometry& g, int64_t dh, int64_t h) {
  const int64_t e = floor_half(dh + (h & 1)), ph = h / 2;
  const bool feeds = h < 2 * g.Hc && std::abs(e) <= g.Rc && ph + e >= 0 && ph + e < g.Hc;
  return feeds ? (e + g.Rc) * g.Ac * g.Hc * g.Wc + ph * g.Wc : -1;
}

// The same per column of a plane with column offset dw: column w = 2 P_w + q feeds coarse
// offset E_w = floor((dw + q) / 2), one per parity q, so the columns of one parity feed a
// run of P_w in [begin[q], end[q]) of one coarse offset plane, at (E_w + Rc) Hc Wc + P_w
// (base[q] + P_w), or nothing (empty run). For an even dw both parities feed the same
// plane (a pair of columns adds into one coarse entry).
struct CoarseColumns {
  int64_t base[2], begin[2], end[2];

  CoarseColumns(const Geometry& g, int64_t dw) {
    for (int64_t q = 0; q < 2; ++q) {
      const int64_t e = floor_half(dw + q);
      const bool feeds = std::abs(e) <= g.Rc;
      base[q] = (e + g.Rc) * g.Hc * g.Wc;
      begin[q] = std::max<int64_t>(0, -e);
      end[q] = feeds ? std::max(begin[q], std::min(g.Wc, g.Wc - e)) : begin[q];
    }
  }
  bool paired() const { return base[0] == base[1]; }
};

// The input band row: (x1 x2)_0 + (x1 x2)_1 + ..., then / C, as input_state adds it.
inline void input_row(float* out, const float* x1, const float* x2, const float* cm,
                      const Geometry& g) {
  const int64_t step = g.H * g.Wpad;
  const float channels = static_cast<float>(g.C);
  for (int64_t c = 0; c < g.Wp; c += kVec) {
    Vec sum = load(x1 + c) * load(x2 + c);
    for (int64_t ch = 1; ch < g.C; ++ch) sum = sum + load(x1 + ch * step + c) * load(x2 + ch * step + c);
    store(out + c, load(cm + c) != 0.0f ? sum / channels : Vec{});
  }
}

enum class Mode {
  kBand,  // the grid / diagonal band: variances given, outputs kept
  kSelf,  // the variance pass: offset 0 of an image with itself, variances recorded
  kSave,  // the band, keeping what the backward pass needs
};

// Where conv_relu_row writes besides its outputs (kSelf: record; kSave: the rest).
struct RowSaves {
  float* record;  // the conv's NNGP output, i.e. the variance (kSelf)
  float* ntk;     // the ReLU's input NTK, s, c (unclipped), k0, sin term (kSave)
  float* std_product;
  float* corr;
  float* k0;
  float* sine;
};

// A row of one side's variances at a ReLU: v, sqrt(v), 1 / sqrt(v) (PaddedVariances).
struct VarianceRow {
  const float* var;
  const float* root;
  const float* inverse_root;
};

inline VarianceRow shifted(const VarianceRow& row, int64_t offset) {
  return VarianceRow{row.var + offset, row.root + offset, row.inverse_root + offset};
}

// One conv + ReLU on a row of a plane. The conv output is
//   nngp = (w2 / 9) box(nngp) + b2,  ntk = nngp + (w2 / 9) box(ntk)   (first: ntk = nngp)
// and the ReLU uses s = sqrt(v1[p]) sqrt(v2[p + D]),
// c = nngp (1 / sqrt(v1[p]) 1 / sqrt(v2[p + D])), except where nngp == v1 == v2 (a pixel
// with itself; always in kSelf, where v1 = v2 = nngp): there s = nngp and c = 1, exactly
// (see the file comment).
template <Mode mode, bool first>
inline void conv_relu_row(const Rows3& rows_nngp, const Rows3& rows_ntk, const VarianceRow& v1,
                          const VarianceRow& v2, const float* cm, float* nngp_out,
                          float* ntk_out, const RowSaves& saves, float w2_ninth, float b2,
                          int64_t n) {
  RollingBox box_nngp(rows_nngp), box_ntk(first ? rows_nngp : rows_ntk);
  for (int64_t c = 0; c < n; c += kVec) {
    const Vec nngp = w2_ninth * box_nngp.next(c) + b2;
    Vec ntk = nngp;
    if constexpr (!first) ntk = nngp + w2_ninth * box_ntk.next(c);
    Vec std_product, corr;
    if constexpr (mode == Mode::kSelf) {
      store(saves.record + c, nngp);
      std_product = nngp;
      corr = splat(1.0f);
    } else {
      const auto self = (nngp == load(v1.var + c)) & (nngp == load(v2.var + c));
      std_product = self ? nngp : load(v1.root + c) * load(v2.root + c);
      // The roots' product first, so the bands of (x1, x2) and (x2, x1) mirror each other.
      corr = self ? splat(1.0f) : nngp * (load(v1.inverse_root + c) * load(v2.inverse_root + c));
    }
    const Vec clipped = clip_unit(corr);
    const Vec k0 = pi_minus_arccos(clipped) * kInv2Pi;
    const Vec sine = vsqrt(max_zero(1.0f - clipped * clipped)) * kInv2Pi;
    const Vec k1 = sine + k0 * clipped;
    const auto valid = load(cm + c) != 0.0f;
    store(nngp_out + c, valid ? k1 * std_product : Vec{});
    store(ntk_out + c, valid ? k0 * ntk : Vec{});
    if constexpr (mode == Mode::kSave) {
      store(saves.ntk + c, ntk);
      store(saves.std_product + c, std_product);
      store(saves.corr + c, corr);
      store(saves.k0 + c, k0);
      store(saves.sine + c, sine);
    }
  }
}

// Where a plane's inputs live: padded images / variances of both sides (Geometry).
struct Sides {
  const float* x1;  // image of the first side, channel 0, row 0, column 0
  const float* x2;
  // Its variances, roots and inverse roots, ReLU 0, row 0, column 0 (unused in kSelf).
  VarianceRow v1;
  VarianceRow v2;
  // Band input instead of images: the pair's input band, planes of H x W (kSelf: the
  // image's offset-0 plane itself).
  const float* band_nngp = nullptr;
  const float* band_ntk = nullptr;
};

// A plane of the input band into a tile: rows [h0, h1), masked, zero past W. Masking here
// makes the stage a function of the valid entries only (their cotangents are the only
// nonzero ones), as the XLA layers read them: the invalid entries are zero there.
inline void load_plane(float* tile, const float* plane_in, const Plane& plane, const float* cm,
                       const Geometry& g) {
  for (int64_t h = plane.h0; h < plane.h1; ++h)
    for (int64_t c = 0; c < g.Wp; ++c)
      tile[h * g.S + c] = (c < g.W && cm[c] != 0.0f) ? plane_in[h * g.W + c] : 0.0f;
}

// Where forward_plane puts its results.
struct PlaneOutputs {
  float* nngp = nullptr;    // kBand: the H x W output planes, rows of W floats
  float* ntk = nullptr;
  float* record = nullptr;  // kSelf: the variance at each ReLU, L planes of H x W
  float* pooled_nngp = nullptr;  // kBand with pool: the pair's pooled sums, added to
  float* pooled_ntk = nullptr;   // (instead of writing nngp / ntk)
};

// One offset plane (dh, dw) through the stage: kBand writes the whole output planes
// (zero outside the valid rows), kSelf the variances, kSave the workspace's saved
// tiles for the backward pass.
template <Mode mode>
Plane forward_plane(const Geometry& g, Workspace& ws, const Sides& in, int64_t dh, int64_t dw,
                    const PlaneOutputs& out) {
  Plane plane(g, ws, dh, dw);
  const int64_t S = g.S, W = g.W, Wp = g.Wp, Wpad = g.Wpad;
  const bool pooled = out.pooled_nngp != nullptr;
  if constexpr (mode == Mode::kBand) {
    // The rows the loops below do not write (pooled: they add zero, so nothing to do).
    for (int64_t h = 0; h < g.H && !pooled; ++h) {
      if (!plane.empty && h >= plane.h0 && h < plane.h1) continue;
      std::memset(out.nngp + h * W, 0, W * sizeof(float));
      std::memset(out.ntk + h * W, 0, W * sizeof(float));
    }
  }
  if (plane.empty) return plane;
  const float* cm = ws.colmask;
  float* nngp_in = ws.tile(Workspace::kNngpIn);
  float* ntk_in = ws.tile(Workspace::kNtkIn);
  float* nngp_out = ws.tile(Workspace::kNngpOut);
  float* ntk_out = ws.tile(Workspace::kNtkOut);
  if (g.band_input) {
    const int64_t at = ((dh + g.R) * g.A + dw + g.R) * g.plane_floats();
    load_plane(nngp_in, in.band_nngp + at, plane, cm, g);
    // The variance pass needs no NTK: its first [conv, ReLU] runs as the image stage's does.
    if (mode != Mode::kSelf) load_plane(ntk_in, in.band_ntk + at, plane, cm, g);
  } else {
    for (int64_t h = plane.h0; h < plane.h1; ++h)
      input_row(nngp_in + h * S, in.x1 + h * Wpad, in.x2 + (h + dh) * Wpad + dw, cm, g);
  }
  for (int64_t l = 0; l < g.L; ++l) {
    // The first conv of the image stage has a zero input NTK (ntk = nngp after it); a band
    // input carries one.
    const bool first = l == 0 && (!g.band_input || mode == Mode::kSelf);
    // The last [conv, ReLU] of the band writes its rows straight into the output planes when
    // they are whole vectors wide (W == Wp), else into a tile copied out below.
    const bool direct = mode == Mode::kBand && !pooled && l == g.L - 1 && W == Wp;
    for (int64_t h = plane.h0; h < plane.h1; ++h) {
      const Rows3 rows_nngp = plane.around(nngp_in, h, S, ws.zero_row);
      const Rows3 rows_ntk = plane.around(ntk_in, h, S, ws.zero_row);
      const int64_t at = h * S;
      RowSaves saves{};
      if constexpr (mode == Mode::kSelf) saves.record = ws.record_row;
      if constexpr (mode == Mode::kSave)
        saves = RowSaves{nullptr, ws.saved(l, Workspace::kSavedNtk) + at,
                         ws.saved(l, Workspace::kSavedStd) + at,
                         ws.saved(l, Workspace::kSavedCorr) + at,
                         ws.saved(l, Workspace::kSavedK0) + at,
                         ws.saved(l, Workspace::kSavedSine) + at};
      VarianceRow v1{}, v2{};
      if constexpr (mode != Mode::kSelf) {
        v1 = shifted(in.v1, (l * g.H + h) * Wpad);
        v2 = shifted(in.v2, (l * g.H + h + dh) * Wpad + dw);
      }
      float* to_nngp = direct ? out.nngp + h * W : nngp_out + at;
      float* to_ntk = direct ? out.ntk + h * W : ntk_out + at;
      if (first)
        conv_relu_row<mode, true>(rows_nngp, rows_ntk, v1, v2, cm, to_nngp, to_ntk, saves,
                                  g.w2_ninth, g.b2, Wp);
      else
        conv_relu_row<mode, false>(rows_nngp, rows_ntk, v1, v2, cm, to_nngp, to_ntk, saves,
                                   g.w2_ninth, g.b2, Wp);
      if constexpr (mode == Mode::kSelf)
        std::memcpy(out.record + (l * g.H + h) * W, ws.record_row, W * sizeof(float));
    }
    if (direct) return plane;
    std::swap(nngp_in, nngp_out);
    std::swap(ntk_in, ntk_out);
  }
  if constexpr (mode == Mode::kBand) {
    if (pooled) {
      // Rows and planes are added in a fixed order, so a pair's pooled band does not
      // depend on the threads (and the diagonal pass adds what the grid adds).
      const CoarseColumns columns(g, dw);
      for (int64_t h = plane.h0; h < plane.h1; ++h) {
        const int64_t row = coarse_row(g, dh, h);
        if (row < 0) continue;
        const float* fine_nngp = nngp_in + h * S;
        const float* fine_ntk = ntk_in + h * S;
        if (columns.paired()) {
          float* to_nngp = out.pooled_nngp + row + columns.base[0];
          float* to_ntk = out.pooled_ntk + row + columns.base[0];
          for (int64_t p = columns.begin[0]; p < columns.end[0]; ++p) {
            to_nngp[p] += fine_nngp[2 * p] + fine_nngp[2 * p + 1];
            to_ntk[p] += fine_ntk[2 * p] + fine_ntk[2 * p + 1];
          }
          continue;
        }
        for (int64_t q = 0; q < 2; ++q) {
          float* to_nngp = out.pooled_nngp + row + columns.base[q];
          float* to_ntk = out.pooled_ntk + row + columns.base[q];
          for (int64_t p = columns.begin[q]; p < columns.end[q]; ++p) {
            to_nngp[p] += fine_nngp[2 * p + q];
            to_ntk[p] += fine_ntk[2 * p + q];
          }
        }
      }
      return plane;
    }
    for (int64_t h = plane.h0; h < plane.h1; ++h) {
      std::memcpy(out.nngp + h * W, nngp_in + h * S, W * sizeof(float));
      std::memcpy(out.ntk + h * W, ntk_in + h * S, W * sizeof(float));
    }
  }
  return plane;
}

// Gradient accumulators of one side, in the padded layouts of its images / variances:
// sum over planes of g_input * x_other (x) and of g_s * s (variances).
// A null pointer: that gradient is not needed (its input is not perturbed), skip its work.
struct Accumulators {
  float* x1;
  float* x2;
  float* v1;
  float* v2;
  // Band input: this plane's input cotangents (H x W each; written, not added: a plane's
  // input feeds that plane only). Null: not needed.
  float* band_nngp = nullptr;
  float* band_ntk = nullptr;
};

// Which gradients a backward call computes.
struct Needs {
  bool x1, x2, v1, v2;
};

// Transpose of a conv on a row: out = box(err) (err already holds w2 / 9 and the mask).
inline void box_row(float* out, const Rows3& rows, int64_t n) {
  RollingBox box(rows);
  for (int64_t c = 0; c < n; c += kVec) store(out + c, box.next(c));
}

// Backward of one ReLU on a row: from the cotangents of its outputs (g_nngp, g_ntk) to
// w2 / 9 * mask * (cotangent of the conv's NNGP output) in err_nngp (it also feeds the
// NTK output nngp + ...), w2 / 9 * mask * (cotangent of the box of the NTK) in err_ntk
// (the conv's 1 / 9 applied here, so that its transpose is a plain box sum), and g_s * s
// in gss. The derivatives are those of _relu.arccos_maps' VJP, with
// d k0 / d c = 1 / (2 pi sqrt(1 - c^2)) = (1 / (2 pi))^2 / sin_term, defined as 0
// where 1 - c^2 <= 0 (a pixel with itself, c == 1 exactly); the chain through
// c = nngp / s takes one division per entry, (1 / (2 pi))^2 / (sin_term s). Without
// with_std, gss is not written (no variance gradient is needed).
template <bool with_std>
inline void relu_backward_row(const float* g_nngp, const float* g_ntk, const RowSaves& saved,
                              const float* cm, float* err_nngp, float* err_ntk, float* gss,
                              float w2_ninth, int64_t n) {
  for (int64_t c = 0; c < n; c += kVec) {
    const auto valid = load(cm + c) != 0.0f;
    const Vec gn = valid ? load(g_nngp + c) : Vec{};
    const Vec gt = valid ? load(g_ntk + c) : Vec{};
    const Vec raw = load(saved.corr + c);
    const Vec k0 = load(saved.k0 + c);
    const Vec sine = load(saved.sine + c);
    const Vec s = load(saved.std_product + c);
    const auto inside = sine > 0.0f;
    const Vec denominator = inside ? sine * s : splat(1.0f);
    const Vec through_corr =
        inside ? (gt * load(saved.ntk + c)) * kInv2PiSquared / denominator : Vec{};
    const Vec g_in = gn * k0 + through_corr;
    const Vec g_k = gt * k0;
    store(err_nngp + c, valid ? w2_ninth * (g_in + g_k) : Vec{});
    store(err_ntk + c, valid ? w2_ninth * g_k : Vec{});
    if constexpr (with_std) {
      const Vec g_std = gn * (sine + k0 * (clip_unit(raw) - raw)) - through_corr * raw;
      store(gss + c, valid ? g_std * s : Vec{});
    }
  }
}

inline void add_row(float* acc, const float* x, int64_t n) {
  for (int64_t c = 0; c < n; c += kVec) store(acc + c, load(acc + c) + load(x + c));
}

inline void add_product_row(float* acc, const float* a, const float* b, int64_t n) {
  for (int64_t c = 0; c < n; c += kVec) store(acc + c, load(acc + c) + load(a + c) * load(b + c));
}

// Gradients of one (pair, plane) for given output cotangents (H x W planes each; with
// pool, the pair's pooled cotangents, whose transpose gives each fine entry its coarse
// entry's cotangent / 16), added to the accumulators: recompute the forward keeping each
// ReLU's inputs, then run the transposes from the last layer to the input band. A null
// cotangent is zero; a null accumulator is skipped (the transposes through the layers
// are shared, the per-side accumulations are not).
void backward_plane(const Geometry& g, Workspace& ws, const Sides& in, int64_t dh, int64_t dw,
                    const float* cot_nngp, const float* cot_ntk, const Accumulators& acc) {
  const Plane plane = forward_plane<Mode::kSave>(g, ws, in, dh, dw, PlaneOutputs{});
  if (plane.empty) return;
  const int64_t S = g.S, Wp = g.Wp, Wpad = g.Wpad, H = g.H;
  const float* cm = ws.colmask;
  float* grad_nngp = ws.tile(Workspace::kGradNngp);
  float* grad_ntk = ws.tile(Workspace::kGradNtk);
  float* err_nngp = ws.tile(Workspace::kErrNngp);
  float* err_ntk = ws.tile(Workspace::kErrNtk);
  float* gss = ws.tile(Workspace::kNngpOut);  // free after the forward
  // The last ReLU reads the output cotangents in place when rows are whole vectors
  // (W == Wp), else from tiles padded to Wp.
  const bool direct = !g.pool && g.W == Wp;
  if (g.pool) {
    // Each fine entry gets its coarse entry's cotangent / 16; those that feed none, zero.
    const CoarseColumns columns(g, dw);
    auto spread = [&](float* fine, const float* coarse, int64_t row) {
      std::fill(fine, fine + Wp, 0.0f);
      if (!coarse || row < 0) return;
      for (int64_t q = 0; q < 2; ++q)
        for (int64_t p = columns.begin[q]; p < columns.end[q]; ++p)
          fine[2 * p + q] = coarse[row + columns.base[q] + p] * 0.0625f;
    };
    for (int64_t h = plane.h0; h < plane.h1; ++h) {
      const int64_t row = coarse_row(g, dh, h);
      spread(grad_nngp + h * S, cot_nngp, row);
      spread(grad_ntk + h * S, cot_ntk, row);
    }
  } else if (!direct) {
    for (int64_t h = plane.h0; h < plane.h1; ++h) {
      if (cot_nngp)
        std::memcpy(grad_nngp + h * S, cot_nngp + h * g.W, g.W * sizeof(float));
      else
        std::fill(grad_nngp + h * S, grad_nngp + h * S + g.W, 0.0f);
      if (cot_ntk)
        std::memcpy(grad_ntk + h * S, cot_ntk + h * g.W, g.W * sizeof(float));
      else
        std::fill(grad_ntk + h * S, grad_ntk + h * S + g.W, 0.0f);
      std::fill(grad_nngp + h * S + g.W, grad_nngp + h * S + Wp, 0.0f);
      std::fill(grad_ntk + h * S + g.W, grad_ntk + h * S + Wp, 0.0f);
    }
  }
  const bool with_std = acc.v1 || acc.v2;
  for (int64_t l = g.L - 1; l >= 0; --l) {
    const bool from_output = direct && l == g.L - 1;
    for (int64_t h = plane.h0; h < plane.h1; ++h) {
      const int64_t at = h * S;
      const RowSaves saved{nullptr, ws.saved(l, Workspace::kSavedNtk) + at,
                           ws.saved(l, Workspace::kSavedStd) + at,
                           ws.saved(l, Workspace::kSavedCorr) + at,
                           ws.saved(l, Workspace::kSavedK0) + at,
                           ws.saved(l, Workspace::kSavedSine) + at};
      const float* gn = !from_output ? grad_nngp + at
                        : cot_nngp   ? cot_nngp + h * g.W
                                     : ws.zero_row;
      const float* gt = !from_output ? grad_ntk + at
                        : cot_ntk    ? cot_ntk + h * g.W
                                     : ws.zero_row;
      if (with_std) {
        relu_backward_row<true>(gn, gt, saved, cm, err_nngp + at, err_ntk + at, gss + at,
                                g.w2_ninth, Wp);
        if (acc.v1) add_row(acc.v1 + (l * H + h) * Wpad, gss + at, Wp);
        if (acc.v2) add_row(acc.v2 + (l * H + h + dh) * Wpad + dw, gss + at, Wp);
      } else {
        relu_backward_row<false>(gn, gt, saved, cm, err_nngp + at, err_ntk + at, gss + at,
                                 g.w2_ninth, Wp);
      }
    }
    // The box filter is self-adjoint: the cotangents of the conv's inputs are the box
    // filter of the (masked) cotangents of its outputs.
    // The image stage's first conv has no input NTK to pass a cotangent to.
    const bool to_ntk = l > 0 || g.band_input;
    for (int64_t h = plane.h0; h < plane.h1; ++h) {
      box_row(grad_nngp + h * S, plane.around(err_nngp, h, S, ws.zero_row), Wp);
      if (to_ntk) box_row(grad_ntk + h * S, plane.around(err_ntk, h, S, ws.zero_row), Wp);
    }
  }
  if (g.band_input) {
    // The input was masked on loading (load_plane): so is its cotangent. Rows outside
    // [h0, h1) were zeroed by the caller.
    if (!acc.band_nngp) return;
    for (int64_t h = plane.h0; h < plane.h1; ++h)
      for (int64_t w = 0; w < g.W; ++w) {
        const bool valid = cm[w] != 0.0f;
        acc.band_nngp[h * g.W + w] = valid ? grad_nngp[h * S + w] : 0.0f;
        acc.band_ntk[h * g.W + w] = valid ? grad_ntk[h * S + w] : 0.0f;
      }
    return;
  }
  if (!acc.x1 && !acc.x2) return;
  // The input band is bilinear: d/dx1[p] = g x2[p + D], d/dx2[p + D] = g x1[p] (the
  // division by C is applied once, when the accumulators are written out).
  const int64_t step = H * Wpad;
  for (int64_t h = plane.h0; h < plane.h1; ++h) {
    float* g_in = err_nngp + h * S;  // reused: the masked input-band cotangent
    const float* gr = grad_nngp + h * S;
    for (int64_t c = 0; c < Wp; c += kVec)
      store(g_in + c, load(cm + c) != 0.0f ? load(gr + c) : Vec{});
    for (int64_t ch = 0; ch < g.C; ++ch) {
      const int64_t here = ch * step + h * Wpad, there = ch * step + (h + dh) * Wpad + dw;
      if (acc.x1) add_product_row(acc.x1 + here, g_in, in.x2 + there, Wp);
      if (acc.x2) add_product_row(acc.x2 + there, g_in, in.x1 + here, Wp);
    }
  }
}

// Threads per call: $KIPD_CPU_THREADS if set (>= 1), else the CPUs this process may
// run on (its affinity mask: a worker pinned to one core, e.g. by taskset, gets one
// thread rather than one per core of the machine).
int thread_count(int64_t work_items) {
  int threads = 0;
  if (const char* env = std::getenv("KIPD_CPU_THREADS")) threads = std::atoi(env);
#if defined(__linux__)
  cpu_set_t allowed;
  if (threads <= 0 && sched_getaffinity(0, sizeof(allowed), &allowed) == 0)
    threads = CPU_COUNT(&allowed);
#endif
  if (threads <= 0) threads = static_cast<int>(std::thread::hardware_concurrency());
  threads = std::max(threads, 1);
  return static_cast<int>(std::min<int64_t>(threads, std::max<int64_t>(work_items, 1)));
}

// body(thread, begin, end) over [0, total) in spans handed out dynamically (the cores
// are shared, so a static split would wait for the slowest one).
template <class Body>
void parallel_spans(int threads, int64_t total, int64_t span, Body&& body) {
  std::atomic<int64_t> next{0};
  auto worker = [&](int thread) {
    for (;;) {
      const int64_t begin = next.fetch_add(span);
      if (begin >= total) return;
      body(thread, begin, std::min(total, begin + span));
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(worker, t);
  worker(0);
  for (auto& thread : pool) thread.join();
}

// The band outputs are large fresh buffers (XLA's allocator maps new memory for them), so
// writing them costs a page fault per 4 KiB page, serialized on the process's memory
// map when two threads fault together. Asking for transparent huge pages (where the
// system's policy is "madvise") makes that one fault per 2 MiB. Only whole pages inside
// the buffer are advised; a refusal (no THP) changes nothing.
void advise_huge_pages(void* data, int64_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr int64_t kHuge = int64_t{2} << 20;
  if (bytes < 2 * kHuge) return;
  const int64_t page = sysconf(_SC_PAGESIZE);
  if (page <= 0) return;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) / page * page;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

// Slices of a backward call's work, each with its own accumulators (see backward):
// enough for any core count this kernel meets, few enough to keep their memory small.
constexpr int64_t kBackwardSlices = 16;

int64_t span_size(int64_t total, int threads, int64_t planes) {
  // ~8 spans per thread for balance, at most one pair's planes so that a span's
  // accumulations stay on one pair's images.
  return std::max<int64_t>(1, std::min<int64_t>(planes, total / (8 * threads)));
}

// `return` the error of an ffi::Error expression that failed: the handlers' checks.
#define KIPD_RETURN_IF_ERROR(expression)                                \
  do {                                                                  \
    if (ffi::Error kipd_error = (expression); kipd_error.failure()) return kipd_error; \
  } while (false)

// Shape checks of the handlers' inputs.
ffi::Error check_images(const ffi::Buffer<ffi::F32>& x, const char* name) {
  if (x.dimensions().size() != 4)
    return ffi::Error::InvalidArgument(std::string(name) + " must be (n, H, W, C)");
  return ffi::Error::Success();
}

ffi::Error check_variances(const ffi::Buffer<ffi::F32>& v, int64_t n, int64_t height,
                           int64_t width, const char* name) {
  auto vd = v.dimensions();
  if (vd.size() != 4 || vd[0] != n || vd[2] != height || vd[3] != width || vd[1] < 1)
    return ffi::Error::InvalidArgument(std::string(name) + " must be (n, num_relus, H, W)");
  return ffi::Error::Success();
}

// Both sides' variances and what the stage needs of its band and image.
ffi::Error check_stage(int64_t n1, int64_t n2, int64_t height, int64_t width, int64_t radius,
                       int64_t pool, const ffi::Buffer<ffi::F32>& v1,
                       const ffi::Buffer<ffi::F32>& v2) {
  KIPD_RETURN_IF_ERROR(check_variances(v1, n1, height, width, "var1"));
  KIPD_RETURN_IF_ERROR(check_variances(v2, n2, height, width, "var2"));
  if (v1.dimensions()[1] != v2.dimensions()[1])
    return ffi::Error::InvalidArgument("var1 and var2 must have the same num_relus");
  if (radius < 0) return ffi::Error::InvalidArgument("radius must be >= 0");
  if (pool && (radius < 1 || height < 2 || width < 2))
    return ffi::Error::InvalidArgument("pooling needs radius >= 1 and at least 2 x 2 pixels");
  return ffi::Error::Success();
}

// A call's inputs laid out for the planes: the padded images (or the input band) and the
// padded variances of both sides. sides(pair) addresses one pair's.
struct Operands {
  Geometry g;
  int64_t n1, n2;
  bool diagonal;
  std::vector<float> x1p, x2p;
  PaddedVariances v1p, v2p;
  const float* v1;  // the variances as given, (n, L, H, W): their gradients divide by them
  const float* v2;
  const float* band_nngp = nullptr;
  const float* band_ntk = nullptr;

  int64_t pairs() const { return diagonal ? n1 : n1 * n2; }
  // Image i's rows of a side's padded variances, ReLU 0, row 0, column 0.
  VarianceRow side_variances(const PaddedVariances& side, int64_t i) const {
    const int64_t at = i * g.variance_floats() + g.margin;
    return VarianceRow{side.var.data() + at, side.root.data() + at,
                       side.inverse_root.data() + at};
  }
  int64_t first(int64_t pair) const { return diagonal ? pair : pair / n2; }
  int64_t second(int64_t pair) const { return diagonal ? pair : pair % n2; }

  Sides sides(int64_t pair) const {
    const int64_t i = first(pair), j = second(pair);
    Sides in{nullptr, nullptr, side_variances(v1p, i), side_variances(v2p, j)};
    if (g.band_input) {
      in.band_nngp = band_nngp + pair * g.input_floats();
      in.band_ntk = band_ntk + pair * g.input_floats();
    } else {
      in.x1 = x1p.data() + i * g.image_floats() + g.margin;
      in.x2 = x2p.data() + j * g.image_floats() + g.margin;
    }
    return in;
  }
};

// The preamble of the handlers on images: check images (n, H, W, C) and variances
// (n, L, H, W) of both sides and lay them out (diagonal: pairs (i, i), so n1 == n2).
ffi::Error image_operands(const ffi::Buffer<ffi::F32>& x1, const ffi::Buffer<ffi::F32>& x2,
                          const ffi::Buffer<ffi::F32>& v1, const ffi::Buffer<ffi::F32>& v2,
                          int64_t radius, float w2, float b2, int64_t pool, bool diagonal,
                          std::optional<Operands>& ops) {
  KIPD_RETURN_IF_ERROR(check_images(x1, "x1"));
  KIPD_RETURN_IF_ERROR(check_images(x2, "x2"));
  auto d1 = x1.dimensions(), d2 = x2.dimensions();
  if (d1[1] != d2[1] || d1[2] != d2[2] || d1[3] != d2[3])
    return ffi::Error::InvalidArgument("x1 and x2 must have the same H, W, C");
  const int64_t n1 = d1[0], n2 = d2[0];
  if (diagonal && n1 != n2) return ffi::Error::InvalidArgument("diagonal needs n1 == n2");
  KIPD_RETURN_IF_ERROR(check_stage(n1, n2, d1[1], d1[2], radius, pool, v1, v2));
  const Geometry g(d1[1], d1[2], d1[3], v1.dimensions()[1], radius, w2, b2, pool != 0);
  ops.emplace(Operands{g, n1, n2, diagonal, pad_images(x1.typed_data(), n1, g),
                       pad_images(x2.typed_data(), n2, g), pad_variances(v1.typed_data(), n1, g),
                       pad_variances(v2.typed_data(), n2, g), v1.typed_data(), v2.typed_data()});
  return ffi::Error::Success();
}

// The preamble of the handlers on a band input: check the band, (n1, n2, A, A, H, W) for
// a grid, (n, A, A, H, W) with diagonal (A odd; the NTK's shape is the NNGP's), and the
// variances, and lay them out.
ffi::Error band_operands(const ffi::Buffer<ffi::F32>& nngp, const ffi::Buffer<ffi::F32>& ntk,
                         const ffi::Buffer<ffi::F32>& v1, const ffi::Buffer<ffi::F32>& v2,
                         float w2, float b2, int64_t pool, bool diagonal,
                         std::optional<Operands>& ops) {
  auto d = nngp.dimensions();
  const size_t rank = diagonal ? 5 : 6;
  if (d.size() != rank)
    return ffi::Error::InvalidArgument(
        diagonal ? "the input band must be (n, A, A, H, W)"
                 : "the input band must be (n1, n2, A, A, H, W)");
  auto dk = ntk.dimensions();
  if (dk.size() != rank || !std::equal(d.begin(), d.end(), dk.begin()))
    return ffi::Error::InvalidArgument("the input NTK band must have the NNGP band's shape");
  const int64_t offsets = d[rank - 4];
  if (offsets != d[rank - 3] || offsets % 2 != 1)
    return ffi::Error::InvalidArgument("the input band must have an odd, square offset window");
  const int64_t n1 = d[0], n2 = diagonal ? d[0] : d[1];
  const int64_t radius = (offsets - 1) / 2;
  const int64_t height = d[rank - 2], width = d[rank - 1];
  KIPD_RETURN_IF_ERROR(check_stage(n1, n2, height, width, radius, pool, v1, v2));
  const Geometry g(height, width, 1, v1.dimensions()[1], radius, w2, b2, pool != 0, true);
  ops.emplace(Operands{g, n1, n2, diagonal, {}, {}, pad_variances(v1.typed_data(), n1, g),
                       pad_variances(v2.typed_data(), n2, g), v1.typed_data(), v2.typed_data(),
                       nngp.typed_data(), ntk.typed_data()});
  return ffi::Error::Success();
}

ffi::Error check_outputs(const Operands& ops, ffi::ResultBuffer<ffi::F32>& nngp,
                         ffi::ResultBuffer<ffi::F32>& ntk) {
  for (auto* out : {&nngp, &ntk})
    if (static_cast<int64_t>((*out)->element_count()) != ops.pairs() * ops.g.output_floats())
      return ffi::Error::InvalidArgument("the outputs must have the (pooled) band's shape");
  return ffi::Error::Success();
}

// One workspace per thread.
std::vector<Workspace> workspaces(const Geometry& g, int threads, bool with_saved) {
  std::vector<Workspace> out;
  out.reserve(threads);
  for (int t = 0; t < threads; ++t) out.emplace_back(g, with_saved);
  return out;
}

// The output band of every pair of the operands.
void band_forward(const Operands& ops, float* out_nngp, float* out_ntk) {
  const Geometry& g = ops.g;
  const int64_t pairs = ops.pairs();
  const int64_t total = pairs * g.planes;
  if (total == 0) return;
  if (g.pool) {
    // A pair is one work item: its planes add into its pooled band in plane order.
    const int threads = thread_count(pairs);
    std::vector<Workspace> spaces = workspaces(g, threads, false);
    parallel_spans(threads, pairs, 1, [&](int thread, int64_t begin, int64_t end) {
      for (int64_t pair = begin; pair < end; ++pair) {
        PlaneOutputs out;
        out.pooled_nngp = out_nngp + pair * g.output_floats();
        out.pooled_ntk = out_ntk + pair * g.output_floats();
        std::fill(out.pooled_nngp, out.pooled_nngp + g.output_floats(), 0.0f);
        std::fill(out.pooled_ntk, out.pooled_ntk + g.output_floats(), 0.0f);
        const Sides in = ops.sides(pair);
        for (int64_t plane = 0; plane < g.planes; ++plane)
          forward_plane<Mode::kBand>(g, spaces[thread], in, plane / g.A - g.R,
                                     plane % g.A - g.R, out);
        // The mean of 16 entries: a power of two, so exact.
        for (int64_t k = 0; k < g.output_floats(); ++k) {
          out.pooled_nngp[k] *= 0.0625f;
          out.pooled_ntk[k] *= 0.0625f;
        }
      }
    });
    return;
  }
  advise_huge_pages(out_nngp, total * g.H * g.W * sizeof(float));
  advise_huge_pages(out_ntk, total * g.H * g.W * sizeof(float));
  const int threads = thread_count(total);
  std::vector<Workspace> spaces = workspaces(g, threads, false);
  parallel_spans(threads, total, span_size(total, threads, g.planes),
                 [&](int thread, int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t pair = item / g.planes, plane = item % g.planes;
      const int64_t offset = item * g.H * g.W;
      PlaneOutputs out;
      out.nngp = out_nngp + offset;
      out.ntk = out_ntk + offset;
      forward_plane<Mode::kBand>(g, spaces[thread], ops.sides(pair), plane / g.A - g.R,
                                 plane % g.A - g.R, out);
    }
  });
}

// The band of pairs (i, j) of x1 x x2 (diagonal == 0) or (i, i) (diagonal != 0).
ffi::Error BandForwardImpl(ffi::Buffer<ffi::F32> x1, ffi::Buffer<ffi::F32> x2,
                           ffi::Buffer<ffi::F32> v1, ffi::Buffer<ffi::F32> v2,
                           ffi::ResultBuffer<ffi::F32> nngp, ffi::ResultBuffer<ffi::F32> ntk,
                           int64_t radius, float w2, float b2, int64_t diagonal,
                           int64_t pool) {
  std::optional<Operands> ops;
  KIPD_RETURN_IF_ERROR(image_operands(x1, x2, v1, v2, radius, w2, b2, pool, diagonal != 0, ops));
  KIPD_RETURN_IF_ERROR(check_outputs(*ops, nngp, ntk));
  band_forward(*ops, nngp->typed_data(), ntk->typed_data());
  return ffi::Error::Success();
}

// The output band of every pair of an input band (the stages after a pooling): grid
// (n1, n2, A, A, H, W) or, with diagonal, each image's own band (n, A, A, H, W).
ffi::Error BandOnBandForwardImpl(ffi::Buffer<ffi::F32> in_nngp, ffi::Buffer<ffi::F32> in_ntk,
                                 ffi::Buffer<ffi::F32> v1, ffi::Buffer<ffi::F32> v2,
                                 ffi::ResultBuffer<ffi::F32> nngp,
                                 ffi::ResultBuffer<ffi::F32> ntk, float w2, float b2,
                                 int64_t diagonal, int64_t pool) {
  std::optional<Operands> ops;
  KIPD_RETURN_IF_ERROR(band_operands(in_nngp, in_ntk, v1, v2, w2, b2, pool, diagonal != 0, ops));
  KIPD_RETURN_IF_ERROR(check_outputs(*ops, nngp, ntk));
  band_forward(*ops, nngp->typed_data(), ntk->typed_data());
  return ffi::Error::Success();
}

// Where a backward call writes: the image gradients (image input) or the input band's
// cotangents (band input), and the variance gradients. Null where not needed.
struct Gradients {
  float* x1 = nullptr;
  float* x2 = nullptr;
  float* band_nngp = nullptr;
  float* band_ntk = nullptr;
  float* v1 = nullptr;
  float* v2 = nullptr;
};

// The gradients a call computes of those asked for: a band input has no second image
// (needs.x1 stands for the input band), and a diagonal call's two sides are one image.
Needs call_needs(const Operands& ops, Needs needs) {
  if (ops.g.band_input) needs.x2 = false;
  if (ops.diagonal) {
    needs.x1 = needs.x2 = needs.x1 || needs.x2;
    needs.v1 = needs.v2 = needs.v1 || needs.v2;
  }
  return needs;
}

// The private accumulators of the slices of a backward call (band_backward), in the
// padded layouts of each side's images and variances; with diagonal, the second side's
// are the first's. A band input's cotangents are written per plane, not accumulated.
class SliceAccumulators {
 public:
  SliceAccumulators(const Operands& ops, int64_t slices) : ops_(ops) {
    const Geometry& g = ops.g;
    image_part_ = g.band_input ? 0 : g.image_floats();
    const int64_t side1 = ops.n1 * (image_part_ + g.variance_floats());
    const int64_t side2 = ops.diagonal ? 0 : ops.n2 * (image_part_ + g.variance_floats());
    per_slice_ = side1 + side2 + 2 * g.margin + kLanes;
    memory_.assign(std::max<int64_t>(slices, 1) * per_slice_, 0.0f);
  }

  Accumulators of(int64_t slice) {
    float* base = memory_.data() + slice * per_slice_ + ops_.g.margin;
    Accumulators acc;
    acc.x1 = base;
    acc.v1 = base + ops_.n1 * image_part_;
    acc.x2 = ops_.diagonal ? acc.x1 : acc.v1 + ops_.n1 * ops_.g.variance_floats();
    acc.v2 = ops_.diagonal ? acc.v1 : acc.x2 + ops_.n2 * image_part_;
    return acc;
  }

  // All slices summed into slice 0, in slice order.
  Accumulators total(int64_t slices) {
    for (int64_t slice = 1; slice < slices; ++slice) {
      const float* from = memory_.data() + slice * per_slice_;
      for (int64_t k = 0; k < per_slice_; ++k) memory_[k] += from[k];
    }
    return of(0);
  }

 private:
  const Operands& ops_;
  int64_t image_part_, per_slice_;
  std::vector<float> memory_;
};

// The items [begin, end) of one slice -- (pair, plane) each -- transposed into the
// slice's accumulators `mine` (a band input: its cotangents written to `out`). A null
// cotangent is zero.
void backward_items(const Operands& ops, Workspace& ws, const Accumulators& mine,
                    int64_t begin, int64_t end, const float* cn, const float* ck,
                    const Gradients& out, const Needs& needs) {
  const Geometry& g = ops.g;
  const bool image_grads = !g.band_input;
  const bool band_grads = g.band_input && needs.x1;
  for (int64_t item = begin; item < end; ++item) {
    const int64_t pair = item / g.planes, plane = item % g.planes;
    const int64_t i = ops.first(pair), j = ops.second(pair);
    Accumulators acc{image_grads && needs.x1 ? mine.x1 + i * g.image_floats() : nullptr,
                     image_grads && needs.x2 ? mine.x2 + j * g.image_floats() : nullptr,
                     needs.v1 ? mine.v1 + i * g.variance_floats() : nullptr,
                     needs.v2 ? mine.v2 + j * g.variance_floats() : nullptr};
    if (band_grads) {
      acc.band_nngp = out.band_nngp + item * g.plane_floats();
      acc.band_ntk = out.band_ntk + item * g.plane_floats();
    }
    // A pooled cotangent is the pair's; a band cotangent the plane's.
    const int64_t offset = g.pool ? pair * g.output_floats() : item * g.H * g.W;
    // The cotangents stream from memory, a plane (2 x H x W floats) per item: ask for
    // the next item's into L2 now, so that they arrive while this one is computed.
    if (!g.pool && item + 1 < end) {
      const int64_t next = offset + g.H * g.W;
      for (int64_t k = 0; k < g.H * g.W; k += 64 / sizeof(float)) {
        if (cn) __builtin_prefetch(cn + next + k, 0, 2);
        if (ck) __builtin_prefetch(ck + next + k, 0, 2);
      }
    }
    backward_plane(g, ws, ops.sides(pair), plane / g.A - g.R, plane % g.A - g.R,
                   cn ? cn + offset : nullptr, ck ? ck + offset : nullptr, acc);
  }
}

// One side's gradients from its summed accumulators: d/dx = acc / C (the input band's
// division by C, applied once), d/dv = sum(g_s s) / (2 v), since s = sqrt(v1 v2) has
// ds/dv1 = s / (2 v1).
void write_side(const Geometry& g, int64_t n, const float* acc_x, const float* acc_v,
                const float* v, float* dx, float* dv, bool need_x, bool need_v) {
  const float channels = static_cast<float>(g.C);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t h = 0; h < g.H; ++h)
      for (int64_t w = 0; w < g.W; ++w) {
        if (need_x)
          for (int64_t c = 0; c < g.C; ++c)
            dx[((i * g.H + h) * g.W + w) * g.C + c] =
                acc_x[i * g.image_floats() + (c * g.H + h) * g.Wpad + w] / channels;
        if (need_v)
          for (int64_t l = 0; l < g.L; ++l) {
            const int64_t at = ((i * g.L + l) * g.H + h) * g.W + w;
            dv[at] = acc_v[i * g.variance_floats() + (l * g.H + h) * g.Wpad + w] /
                     (2.0f * v[at]);
          }
      }
}

// Gradients of the band w.r.t. the inputs (both images, or the input band) and both
// variance sets. With diagonal, the second side's accumulators are the first's, and
// only the first side's gradients are written. Only the gradients in `needs` are
// computed and written (the others' outputs may be empty; for a band input, needs.x1
// stands for the input band). An empty cotangent (no elements) stands for a zero one.
ffi::Error band_backward(const Operands& ops, ffi::Buffer<ffi::F32>& cot_nngp,
                         ffi::Buffer<ffi::F32>& cot_ntk, const Gradients& out, Needs needs) {
  const Geometry& g = ops.g;
  const int64_t pairs = ops.pairs();
  const int64_t total = pairs * g.planes;
  for (const auto* cot : {&cot_nngp, &cot_ntk}) {
    const int64_t count = static_cast<int64_t>(cot->element_count());
    if (count != pairs * g.output_floats() && count != 0)
      return ffi::Error::InvalidArgument(
          "cotangents must have the (pooled) band's shape (or none)");
  }
  const float* cn = cot_nngp.element_count() ? cot_nngp.typed_data() : nullptr;
  const float* ck = cot_ntk.element_count() ? cot_ntk.typed_data() : nullptr;
  needs = call_needs(ops, needs);
  // Planes that the items skip (empty, or rows outside the valid range) have zero input
  // cotangents.
  if (g.band_input && needs.x1) {
    std::fill(out.band_nngp, out.band_nngp + pairs * g.input_floats(), 0.0f);
    std::fill(out.band_ntk, out.band_ntk + pairs * g.input_floats(), 0.0f);
  }
  const bool nothing = (!cn && !ck) || !(needs.x1 || needs.x2 || needs.v1 || needs.v2);
  // The items are cut into a fixed number of slices that depends on the problem only,
  // each with private accumulators, summed in slice order: no atomics, and the same bits
  // whichever thread ran a slice and however many threads there are (a block of the plan
  // recomputed on another worker after a failure gives the identical gradient).
  const int64_t slices = nothing ? 0 : std::min<int64_t>(total, kBackwardSlices);
  const int threads = thread_count(slices);
  SliceAccumulators accumulators(ops, slices);
  std::vector<Workspace> spaces = workspaces(g, threads, true);
  parallel_spans(threads, slices, 1, [&](int thread, int64_t first_slice, int64_t last_slice) {
    for (int64_t slice = first_slice; slice < last_slice; ++slice)
      backward_items(ops, spaces[thread], accumulators.of(slice), slice * total / slices,
                     (slice + 1) * total / slices, cn, ck, out, needs);
  });
  const Accumulators sums = accumulators.total(slices);
  const bool image_grads = !g.band_input;
  write_side(g, ops.n1, sums.x1, sums.v1, ops.v1, out.x1, out.v1, image_grads && needs.x1,
             needs.v1);
  if (!ops.diagonal)
    write_side(g, ops.n2, sums.x2, sums.v2, ops.v2, out.x2, out.v2, image_grads && needs.x2,
               needs.v2);
  return ffi::Error::Success();
}

// An unneeded gradient's result may be empty: check the needed ones' sizes.
ffi::Error check_gradients(
    std::initializer_list<std::pair<ffi::ResultBuffer<ffi::F32>*, const ffi::Buffer<ffi::F32>*>>
        outs,
    std::initializer_list<bool> need) {
  auto needed = need.begin();
  for (const auto& [result, input] : outs)
    if (*needed++ && (*result)->element_count() != input->element_count())
      return ffi::Error::InvalidArgument("a needed gradient must have its input's shape");
  return ffi::Error::Success();
}

ffi::Error BandBackwardImpl(ffi::Buffer<ffi::F32> x1, ffi::Buffer<ffi::F32> x2,
                            ffi::Buffer<ffi::F32> v1, ffi::Buffer<ffi::F32> v2,
                            ffi::Buffer<ffi::F32> cot_nngp, ffi::Buffer<ffi::F32> cot_ntk,
                            ffi::ResultBuffer<ffi::F32> dx1, ffi::ResultBuffer<ffi::F32> dx2,
                            ffi::ResultBuffer<ffi::F32> dv1, ffi::ResultBuffer<ffi::F32> dv2,
                            int64_t radius, float w2, float b2, int64_t pool,
                            int64_t need_x1, int64_t need_x2, int64_t need_v1,
                            int64_t need_v2) {
  const Needs needs{need_x1 != 0, need_x2 != 0, need_v1 != 0, need_v2 != 0};
  KIPD_RETURN_IF_ERROR(check_gradients({{&dx1, &x1}, {&dx2, &x2}, {&dv1, &v1}, {&dv2, &v2}},
                                       {needs.x1, needs.x2, needs.v1, needs.v2}));
  std::optional<Operands> ops;
  KIPD_RETURN_IF_ERROR(image_operands(x1, x2, v1, v2, radius, w2, b2, pool, false, ops));
  Gradients out;
  out.x1 = dx1->typed_data();
  out.x2 = dx2->typed_data();
  out.v1 = dv1->typed_data();
  out.v2 = dv2->typed_data();
  return band_backward(*ops, cot_nngp, cot_ntk, out, needs);
}

ffi::Error DiagonalBackwardImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> v,
                                ffi::Buffer<ffi::F32> cot_nngp, ffi::Buffer<ffi::F32> cot_ntk,
                                ffi::ResultBuffer<ffi::F32> dx, ffi::ResultBuffer<ffi::F32> dv,
                                int64_t radius, float w2, float b2, int64_t pool) {
  std::optional<Operands> ops;
  KIPD_RETURN_IF_ERROR(image_operands(x, x, v, v, radius, w2, b2, pool, true, ops));
  Gradients out;
  out.x1 = dx->typed_data();
  out.v1 = dv->typed_data();
  return band_backward(*ops, cot_nngp, cot_ntk, out, Needs{true, true, true, true});
}

// Cotangents of an input band and gradients of the variances (diagonal: the variances of
// each image's own band, dv2 not written and may be empty).
ffi::Error BandOnBandBackwardImpl(ffi::Buffer<ffi::F32> in_nngp, ffi::Buffer<ffi::F32> in_ntk,
                                  ffi::Buffer<ffi::F32> v1, ffi::Buffer<ffi::F32> v2,
                                  ffi::Buffer<ffi::F32> cot_nngp, ffi::Buffer<ffi::F32> cot_ntk,
                                  ffi::ResultBuffer<ffi::F32> d_nngp,
                                  ffi::ResultBuffer<ffi::F32> d_ntk,
                                  ffi::ResultBuffer<ffi::F32> dv1,
                                  ffi::ResultBuffer<ffi::F32> dv2, float w2, float b2,
                                  int64_t diagonal, int64_t pool, int64_t need_band,
                                  int64_t need_v1, int64_t need_v2) {
  const bool band = need_band != 0, first = need_v1 != 0;
  const bool second = need_v2 != 0 && diagonal == 0;
  KIPD_RETURN_IF_ERROR(check_gradients(
      {{&d_nngp, &in_nngp}, {&d_ntk, &in_ntk}, {&dv1, &v1}, {&dv2, &v2}},
      {band, band, first, second}));
  std::optional<Operands> ops;
  KIPD_RETURN_IF_ERROR(band_operands(in_nngp, in_ntk, v1, v2, w2, b2, pool, diagonal != 0, ops));
  Gradients out;
  out.band_nngp = d_nngp->typed_data();
  out.band_ntk = d_ntk->typed_data();
  out.v1 = dv1->typed_data();
  out.v2 = dv2->typed_data();
  return band_backward(*ops, cot_nngp, cot_ntk, out, Needs{band, false, first, second});
}

// Per image, the variances at each ReLU's input: offset 0 of the image with itself. With
// band_input, x is the offset-0 plane of each image's own input band, (n, H, W).
ffi::Error VariancesImpl(ffi::Buffer<ffi::F32> x, ffi::ResultBuffer<ffi::F32> var,
                         float w2, float b2, int64_t band_input) {
  auto d = x.dimensions();
  if (band_input ? d.size() != 3 : d.size() != 4)
    return ffi::Error::InvalidArgument(band_input ? "the input plane must be (n, H, W)"
                                                  : "x must be (n, H, W, C)");
  auto vd = var->dimensions();
  if (vd.size() != 4 || vd[0] != d[0] || vd[2] != d[1] || vd[3] != d[2] || vd[1] < 1)
    return ffi::Error::InvalidArgument("the variances must be (n, num_relus, H, W)");
  const int64_t n = d[0];
  if (n == 0) return ffi::Error::Success();
  // Radius 0: the geometry (margins, padded rows) differs from the band's, but the
  // arithmetic of an entry does not depend on it.
  const Geometry g(d[1], d[2], band_input ? 1 : d[3], vd[1], 0, w2, b2, false, band_input != 0);
  const std::vector<float> xp =
      band_input ? std::vector<float>{} : pad_images(x.typed_data(), n, g);
  float* out = var->typed_data();
  const int threads = thread_count(n);
  std::vector<Workspace> spaces = workspaces(g, threads, false);
  parallel_spans(threads, n, 1, [&](int thread, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      Sides in{nullptr, nullptr, {}, {}};
      if (band_input) {
        in.band_nngp = x.typed_data() + i * g.plane_floats();
      } else {
        in.x1 = in.x2 = xp.data() + i * g.image_floats() + g.margin;
      }
      PlaneOutputs outputs;
      outputs.record = out + i * g.L * g.H * g.W;
      forward_plane<Mode::kSelf>(g, spaces[thread], in, 0, 0, outputs);
    }
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(KipdCpuBandForward, BandForwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // x1 (n1, H, W, C)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // x2 (n2, H, W, C)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // var1 (n1, L, H, W)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // var2 (n2, L, H, W)
                                  .Ret<ffi::Buffer<ffi::F32>>()  // nngp
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ntk
                                  .Attr<int64_t>("radius")
                                  .Attr<float>("w2")
                                  .Attr<float>("b2")
                                  .Attr<int64_t>("diagonal")
                                  .Attr<int64_t>("pool"));  // 1: the pooled band

XLA_FFI_DEFINE_HANDLER_SYMBOL(KipdCpuBandBackward, BandBackwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // x1
                                  .Arg<ffi::Buffer<ffi::F32>>()  // x2
                                  .Arg<ffi::Buffer<ffi::F32>>()  // var1
                                  .Arg<ffi::Buffer<ffi::F32>>()  // var2
                                  .Arg<ffi::Buffer<ffi::F32>>()  // cotangent of nngp
                                  .Arg<ffi::Buffer<ffi::F32>>()  // cotangent of ntk
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d x1
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d x2
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d var1
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d var2
                                  .Attr<int64_t>("radius")
                                  .Attr<float>("w2")
                                  .Attr<float>("b2")
                                  .Attr<int64_t>("pool")
                                  .Attr<int64_t>("need_x1")  // 0: d x1 not computed,
                                  .Attr<int64_t>("need_x2")  // its result may be empty
                                  .Attr<int64_t>("need_v1")
                                  .Attr<int64_t>("need_v2"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(KipdCpuDiagonalBackward, DiagonalBackwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // x (n, H, W, C)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // var (n, L, H, W)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // cotangent of nngp
                                  .Arg<ffi::Buffer<ffi::F32>>()  // cotangent of ntk
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d x
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d var
                                  .Attr<int64_t>("radius")
                                  .Attr<float>("w2")
                                  .Attr<float>("b2")
                                  .Attr<int64_t>("pool"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(KipdCpuBandOnBandForward, BandOnBandForwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // input nngp band
                                  .Arg<ffi::Buffer<ffi::F32>>()  // input ntk band
                                  .Arg<ffi::Buffer<ffi::F32>>()  // var1 (n1, L, H, W)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // var2 (n2, L, H, W)
                                  .Ret<ffi::Buffer<ffi::F32>>()  // nngp
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ntk
                                  .Attr<float>("w2")
                                  .Attr<float>("b2")
                                  .Attr<int64_t>("diagonal")  // 1: (n, A, A, H, W) input
                                  .Attr<int64_t>("pool"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(KipdCpuBandOnBandBackward, BandOnBandBackwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // input nngp band
                                  .Arg<ffi::Buffer<ffi::F32>>()  // input ntk band
                                  .Arg<ffi::Buffer<ffi::F32>>()  // var1
                                  .Arg<ffi::Buffer<ffi::F32>>()  // var2
                                  .Arg<ffi::Buffer<ffi::F32>>()  // cotangent of nngp
                                  .Arg<ffi::Buffer<ffi::F32>>()  // cotangent of ntk
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d input nngp
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d input ntk
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d var1
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d var2
                                  .Attr<float>("w2")
                                  .Attr<float>("b2")
                                  .Attr<int64_t>("diagonal")
                                  .Attr<int64_t>("pool")
                                  .Attr<int64_t>("need_band")  // 0: d input not computed
                                  .Attr<int64_t>("need_v1")
                                  .Attr<int64_t>("need_v2"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(KipdCpuVariances, VariancesImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // x (n, H, W, C) / (n, H, W)
                                  .Ret<ffi::Buffer<ffi::F32>>()  // var (n, L, H, W)
                                  .Attr<float>("w2")
                                  .Attr<float>("b2")
                                  .Attr<int64_t>("band_input"));
