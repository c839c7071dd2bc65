#include "coca/data/resample.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace coca {
namespace {

double filter_support(ResampleFilter f) {
  switch (f) {
    case ResampleFilter::bilinear: return 1.0;
    case ResampleFilter::bicubic: return 2.0;
    case ResampleFilter::lanczos3: return 3.0;
  }
  return 1.0;
}

double sinc(double x) {
  if (x == 0.0) return 1.0;
  x *= M_PI;
  return std::sin(x) / x;
}

double filter_value(ResampleFilter f, double x) {
  x = std::fabs(x);
  switch (f) {
    case ResampleFilter::bilinear: return x < 1.0 ? 1.0 - x : 0.0;
    case ResampleFilter::bicubic: {
      const double a = -0.5;  // PIL's and Keys' choice
      if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
      if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
      return 0.0;
    }
    case ResampleFilter::lanczos3: return x < 3.0 ? sinc(x) * sinc(x / 3.0) : 0.0;
  }
  return 0.0;
}

// Four floats: one pixel's R, G, B and a spare lane. GCC/Clang vector extensions, so the
// same code gives SSE/AVX on x86 and NEON on ARM without a runtime dispatch.
using V4 = float __attribute__((vector_size(16)));

// Lanes of (a, b) by index, 0-3 from a and 4-7 from b.
template <int A, int B, int C, int D>
inline V4 shuffle(V4 a, V4 b) {
#if defined(__clang__)
  return __builtin_shufflevector(a, b, A, B, C, D);
#else
  using Mask = int __attribute__((vector_size(16)));
  return __builtin_shuffle(a, b, Mask{A, B, C, D});
#endif
}

inline V4 load4(const float* p) {
  V4 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// Per output index along one axis: the first source index, the number of source pixels
// with a weight, and the normalised weights. The coefficients depend only on (source size,
// box, output size, filter), so each axis is planned once per call (and reused while they
// stay the same), not per row.
struct AxisPlan {
  int in_size = -1, out_size = -1;
  double box0 = 0, box_len = 0;
  ResampleFilter filter = ResampleFilter::bilinear;
  std::vector<int> first;
  std::vector<int> count;
  std::vector<float> weights;  // out_size * taps; entries past count[o] are zero
  int taps = 0;                // the largest count
  // The same weights with first[o] moved left where needed so that all `taps` entries lie
  // inside the source (zero weights on the extra pixels): a fixed-length inner loop.
  std::vector<int> fixed_first;
  std::vector<float> fixed_weights;  // out_size * taps * 4: each weight four times, one per lane
  std::vector<double> work;          // scratch for plan_axis
  std::vector<float> work_weights;
};

void plan_axis(AxisPlan& p, int in_size, double box0, double box_len, int out_size, ResampleFilter f) {
  if (p.in_size == in_size && p.out_size == out_size && p.box0 == box0 && p.box_len == box_len && p.filter == f)
    return;
  const double scale = box_len / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = filter_support(f) * filterscale;
  const int max_taps = static_cast<int>(std::ceil(support)) * 2 + 1;
  p.first.assign(static_cast<size_t>(out_size), 0);
  p.count.assign(static_cast<size_t>(out_size), 0);
  std::vector<double>& w = p.work;
  w.resize(static_cast<size_t>(max_taps));
  std::vector<float>& wf = p.work_weights;
  wf.assign(static_cast<size_t>(out_size) * max_taps, 0.0f);
  int taps = 1;
  for (int o = 0; o < out_size; ++o) {
    const double center = box0 + (o + 0.5) * scale;
    int lo = static_cast<int>(center - support + 0.5);
    int hi = static_cast<int>(center + support + 0.5);
    lo = std::clamp(lo, 0, in_size - 1);
    hi = std::clamp(hi, lo + 1, in_size);
    int n = std::min(hi - lo, max_taps);
    double total = 0;
    for (int k = 0; k < n; ++k) {
      w[k] = filter_value(f, (k + lo - center + 0.5) / filterscale);
      total += w[k];
    }
    if (total == 0.0) {  // a box entirely outside the image: take the nearest pixel
      n = 1;
      w[0] = total = 1.0;
    }
    p.first[o] = lo;
    p.count[o] = n;
    taps = std::max(taps, n);
    for (int k = 0; k < n; ++k) wf[static_cast<size_t>(o) * max_taps + k] = static_cast<float>(w[k] / total);
  }
  p.taps = taps;
  p.weights.assign(static_cast<size_t>(out_size) * taps, 0.0f);
  p.fixed_first.assign(static_cast<size_t>(out_size), 0);
  p.fixed_weights.assign(static_cast<size_t>(out_size) * taps * 4, 0.0f);
  for (int o = 0; o < out_size; ++o) {
    const float* src = wf.data() + static_cast<size_t>(o) * max_taps;
    std::copy(src, src + p.count[o], p.weights.begin() + static_cast<ptrdiff_t>(o) * taps);
    // taps <= in_size, since every count is; shift the window left at the right edge.
    const int shift = std::max(0, p.first[o] + taps - in_size);
    p.fixed_first[o] = p.first[o] - shift;
    float* dst = p.fixed_weights.data() + (static_cast<size_t>(o) * taps + shift) * 4;
    for (int k = 0; k < p.count[o]; ++k)
      for (int l = 0; l < 4; ++l) dst[k * 4 + l] = src[k];
  }
  p.in_size = in_size;
  p.out_size = out_size;
  p.box0 = box0;
  p.box_len = box_len;
  p.filter = f;
}

struct Scratch {
  AxisPlan xs, ys;
  std::vector<float> rows_v;  // kRows vertically filtered source rows (the columns in use), RGB
  std::vector<float> rows_h;  // kRows output rows, RGB
  std::vector<int> hfirst;    // xs.fixed_first relative to the first column in use
  std::vector<const uint8_t*> rows;
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// out[i] (+)= sum_k w[k] * rows[k][i] over K source rows of uint8, i < n: contiguous, so
// that the compiler vectorises it (widening 8-bit loads, fused multiply-add).
template <int K>
void vertical_block(float* __restrict out, const uint8_t* const* rows, const float* w, size_t n, bool add) {
  const uint8_t* __restrict r0 = rows[0];
  const uint8_t* __restrict r1 = rows[K > 1 ? 1 : 0];
  const uint8_t* __restrict r2 = rows[K > 2 ? 2 : 0];
  const uint8_t* __restrict r3 = rows[K > 3 ? 3 : 0];
  const float w0 = w[0], w1 = K > 1 ? w[1] : 0.f, w2 = K > 2 ? w[2] : 0.f, w3 = K > 3 ? w[3] : 0.f;
  if (add) {
    for (size_t i = 0; i < n; ++i) {
      float a = out[i] + w0 * static_cast<float>(r0[i]);
      if constexpr (K > 1) a += w1 * static_cast<float>(r1[i]);
      if constexpr (K > 2) a += w2 * static_cast<float>(r2[i]);
      if constexpr (K > 3) a += w3 * static_cast<float>(r3[i]);
      out[i] = a;
    }
  } else {
    for (size_t i = 0; i < n; ++i) {
      float a = w0 * static_cast<float>(r0[i]);
      if constexpr (K > 1) a += w1 * static_cast<float>(r1[i]);
      if constexpr (K > 2) a += w2 * static_cast<float>(r2[i]);
      if constexpr (K > 3) a += w3 * static_cast<float>(r3[i]);
      out[i] = a;
    }
  }
}

void vertical_pass(float* out, const uint8_t* const* rows, const float* w, int count, size_t n) {
  for (int k = 0; k < count; k += 4) {
    const bool add = k > 0;
    switch (std::min(count - k, 4)) {
      case 1: vertical_block<1>(out, rows + k, w + k, n, add); break;
      case 2: vertical_block<2>(out, rows + k, w + k, n, add); break;
      case 3: vertical_block<3>(out, rows + k, w + k, n, add); break;
      default: vertical_block<4>(out, rows + k, w + k, n, add); break;
    }
  }
}

// One output row from the vertically filtered row `in` (RGB floats, one spare float at the
// end) into `out` (out_w RGB floats, one spare float at the end), 0..255 but not clamped.
// Each pixel is one 4-float vector (R, G, B, spare); its store's spare lane is overwritten
// by the next pixel.
// Output rows per horizontal sweep: each weight is loaded once for all of them (the sweep
// is bound by loads, not arithmetic).
constexpr int kRows = 4;

// R rows of the horizontal pass: from the vertically filtered rows in[r] (RGB floats, one
// spare float at the end) into out[r] (out_w RGB floats, one spare float at the end),
// 0..255 but not clamped. Each pixel is one 4-float vector (R, G, B, spare); its store's
// spare lane is overwritten by the next pixel.
template <int T, int R>
void horizontal_rows(const float* const* in, const int* first, const float* weights, int taps, int out_w,
                     float* const* out) {
  const int nt = T > 0 ? T : taps;
  for (int x = 0; x < out_w; ++x) {
    const size_t off = static_cast<size_t>(first[x]) * 3;
    const float* w = weights + static_cast<size_t>(x) * nt * 4;
    V4 a[R];
    const V4 w0 = load4(w);
    for (int r = 0; r < R; ++r) a[r] = load4(in[r] + off) * w0;
    for (int k = 1; k < nt; ++k) {
      const V4 wk = load4(w + 4 * k);
      for (int r = 0; r < R; ++r) a[r] += load4(in[r] + off + 3 * k) * wk;
    }
    for (int r = 0; r < R; ++r) std::memcpy(out[r] + static_cast<size_t>(x) * 3, &a[r], sizeof(V4));
  }
}

template <int R>
void horizontal_pass(const float* const* in, const int* first, const float* weights, int taps, int out_w,
                     float* const* out) {
  switch (taps) {
    case 1: return horizontal_rows<1, R>(in, first, weights, taps, out_w, out);
    case 2: return horizontal_rows<2, R>(in, first, weights, taps, out_w, out);
    case 3: return horizontal_rows<3, R>(in, first, weights, taps, out_w, out);
    case 4: return horizontal_rows<4, R>(in, first, weights, taps, out_w, out);
    case 5: return horizontal_rows<5, R>(in, first, weights, taps, out_w, out);
    case 6: return horizontal_rows<6, R>(in, first, weights, taps, out_w, out);
    case 7: return horizontal_rows<7, R>(in, first, weights, taps, out_w, out);
    case 8: return horizontal_rows<8, R>(in, first, weights, taps, out_w, out);
    default: return horizontal_rows<0, R>(in, first, weights, taps, out_w, out);
  }
}

inline V4 clamp255(V4 v) {
  const V4 lo{0, 0, 0, 0}, hi{255, 255, 255, 255};
  v = v < lo ? lo : v;
  return v > hi ? hi : v;
}

// One output row (out_w RGB floats, one spare float at the end) clamped to 0..255 and
// normalised into the planes r, g, b: four pixels at a time, transposed from
// (R, G, B, -) x 4 to R x 4, G x 4, B x 4.
void normalise_row(const float* rgb, int out_w, V4 scale, V4 shift, float* r, float* g, float* b) {
  const V4 sr = V4{1, 1, 1, 1} * scale[0], tr = V4{1, 1, 1, 1} * shift[0];
  const V4 sg = V4{1, 1, 1, 1} * scale[1], tg = V4{1, 1, 1, 1} * shift[1];
  const V4 sb = V4{1, 1, 1, 1} * scale[2], tb = V4{1, 1, 1, 1} * shift[2];
  int x = 0;
  for (; x + 4 <= out_w; x += 4) {
    const float* p = rgb + static_cast<size_t>(x) * 3;
    const V4 a0 = load4(p), a1 = load4(p + 3), a2 = load4(p + 6), a3 = load4(p + 9);
    const V4 t0 = shuffle<0, 4, 1, 5>(a0, a1);  // r0 r1 g0 g1
    const V4 t1 = shuffle<0, 4, 1, 5>(a2, a3);  // r2 r3 g2 g3
    const V4 t2 = shuffle<2, 6, 2, 6>(a0, a1);  // b0 b1 . .
    const V4 t3 = shuffle<2, 6, 2, 6>(a2, a3);  // b2 b3 . .
    const V4 vr = clamp255(shuffle<0, 1, 4, 5>(t0, t1)) * sr + tr;
    const V4 vg = clamp255(shuffle<2, 3, 6, 7>(t0, t1)) * sg + tg;
    const V4 vb = clamp255(shuffle<0, 1, 4, 5>(t2, t3)) * sb + tb;
    std::memcpy(r + x, &vr, sizeof(vr));
    std::memcpy(g + x, &vg, sizeof(vg));
    std::memcpy(b + x, &vb, sizeof(vb));
  }
  for (; x < out_w; ++x) {
    const V4 v = clamp255(load4(rgb + static_cast<size_t>(x) * 3)) * scale + shift;
    r[x] = v[0];
    g[x] = v[1];
    b[x] = v[2];
  }
}

// Both passes: for each output row, the vertical filter over the source rows under it
// (only the columns the horizontal filter reads), then the horizontal filter, kRows output
// rows at a time; calls sink(y, row) with each output row as out_w RGB floats in 0..255
// (not clamped; one spare float at the end).
template <typename Sink>
void resample_core(const RgbView& src, const SourceBox& box, int out_w, int out_h, ResampleFilter f, Sink&& sink) {
  COCA_CHECK(src.width > 0 && src.height > 0 && out_w > 0 && out_h > 0 && box.w > 0 && box.h > 0,
             "resample: bad geometry (source ", src.width, "x", src.height, ", box ", box.w, "x", box.h,
             ", output ", out_w, "x", out_h, ")");
  Scratch& s = scratch();
  plan_axis(s.xs, src.width, box.x0, box.w, out_w, f);
  plan_axis(s.ys, src.height, box.y0, box.h, out_h, f);
  const AxisPlan& xs = s.xs;
  const AxisPlan& ys = s.ys;
  const int col_lo = xs.fixed_first[0];
  const int col_hi = xs.fixed_first[static_cast<size_t>(out_w) - 1] + xs.taps;  // non-decreasing firsts
  const size_t n = static_cast<size_t>(col_hi - col_lo) * 3;
  const size_t out_n = static_cast<size_t>(out_w) * 3 + 1;
  s.rows_v.resize((n + 1) * kRows);
  s.rows_h.resize(out_n * kRows);
  float* vrow[kRows];
  float* hrow[kRows];
  for (int r = 0; r < kRows; ++r) {
    vrow[r] = s.rows_v.data() + (n + 1) * r;
    vrow[r][n] = 0.0f;  // read (times the spare lane) by the last pixel's 4-float load
    hrow[r] = s.rows_h.data() + out_n * r;
  }
  std::vector<int>& hfirst = s.hfirst;
  hfirst.resize(static_cast<size_t>(out_w));
  for (int x = 0; x < out_w; ++x) hfirst[static_cast<size_t>(x)] = xs.fixed_first[static_cast<size_t>(x)] - col_lo;
  std::vector<const uint8_t*>& rows = s.rows;
  rows.resize(static_cast<size_t>(ys.taps));
  const uint8_t* base = src.data + static_cast<size_t>(col_lo) * 3;
  for (int y = 0; y < out_h; y += kRows) {
    const int m = std::min(kRows, out_h - y);
    for (int r = 0; r < m; ++r) {
      const int cnt = ys.count[static_cast<size_t>(y + r)];
      const int y0 = ys.first[static_cast<size_t>(y + r)];
      for (int k = 0; k < cnt; ++k) rows[static_cast<size_t>(k)] = base + static_cast<int64_t>(y0 + k) * src.stride;
      vertical_pass(vrow[r], rows.data(), ys.weights.data() + static_cast<size_t>(y + r) * ys.taps, cnt, n);
    }
    if (m == kRows) {
      horizontal_pass<kRows>(vrow, hfirst.data(), xs.fixed_weights.data(), xs.taps, out_w, hrow);
    } else {
      for (int r = 0; r < m; ++r)
        horizontal_pass<1>(vrow + r, hfirst.data(), xs.fixed_weights.data(), xs.taps, out_w, hrow + r);
    }
    for (int r = 0; r < m; ++r) sink(y + r, hrow[r]);
  }
}

}  // namespace

ResampleFilter parse_resample_filter(const std::string& name) {
  if (name == "bilinear") return ResampleFilter::bilinear;
  if (name == "bicubic") return ResampleFilter::bicubic;
  if (name == "lanczos" || name == "lanczos3") return ResampleFilter::lanczos3;
  throw Error(str_cat("unknown resample filter '", name, "' (bilinear, bicubic, lanczos3)"));
}

void resample_rgb_u8(const RgbView& src, const SourceBox& box, int out_w, int out_h, ResampleFilter filter,
                     uint8_t* out) {
  resample_core(src, box, out_w, out_h, filter, [&](int y, const float* row) {
    uint8_t* dst = out + static_cast<size_t>(y) * out_w * 3;
    for (int i = 0; i < out_w * 3; ++i) {
      const float v = std::nearbyint(row[i]);
      dst[i] = static_cast<uint8_t>(v < 0.f ? 0.f : v > 255.f ? 255.f : v);
    }
  });
}

void resample_rgb_normalized(const RgbView& src, const SourceBox& box, int out_w, int out_h,
                             ResampleFilter filter, const float mean[3], const float std[3], float* out) {
  // Clamped to the 8-bit range first, as an image resized to uint8 then normalised.
  V4 scale{0, 0, 0, 0}, shift{0, 0, 0, 0};
  for (int c = 0; c < 3; ++c) {
    scale[c] = 1.0f / (255.0f * std[c]);
    shift[c] = -mean[c] / std[c];
  }
  const size_t plane = static_cast<size_t>(out_w) * out_h;
  resample_core(src, box, out_w, out_h, filter, [&](int y, const float* row) {
    float* r = out + static_cast<size_t>(y) * out_w;
    normalise_row(row, out_w, scale, shift, r, r + plane, r + 2 * plane);
  });
}

void crop_rgb_normalized(const RgbView& src, int x0, int y0, int w, int h, const float mean[3], const float std[3],
                         float* out) {
  COCA_CHECK(x0 >= 0 && y0 >= 0 && x0 + w <= src.width && y0 + h <= src.height, "crop: box ", w, "x", h, "+", x0,
             "+", y0, " outside a ", src.width, "x", src.height, " image");
  float lut[3][256];
  for (int c = 0; c < 3; ++c)
    for (int v = 0; v < 256; ++v) lut[c][v] = (static_cast<float>(v) / 255.0f - mean[c]) / std[c];
  const size_t plane = static_cast<size_t>(w) * h;
  for (int y = 0; y < h; ++y) {
    const uint8_t* in = src.data + static_cast<int64_t>(y0 + y) * src.stride + static_cast<size_t>(x0) * 3;
    float* r = out + static_cast<size_t>(y) * w;
    float* g = r + plane;
    float* b = g + plane;
    for (int x = 0; x < w; ++x) {
      r[x] = lut[0][in[x * 3]];
      g[x] = lut[1][in[x * 3 + 1]];
      b[x] = lut[2][in[x * 3 + 2]];
    }
  }
}

Image resize_shorter_center_crop(const Image& src, int size, ResampleFilter filter) {
  COCA_CHECK(size > 0, "resize: size must be positive, got ", size);
  const double side = std::min(src.width, src.height);
  SourceBox box{(src.width - side) / 2.0, (src.height - side) / 2.0, side, side};
  Image out;
  out.width = out.height = size;
  out.rgb.resize(static_cast<size_t>(size) * size * 3);
  const RgbView view{src.rgb.data(), src.width, src.height, static_cast<int64_t>(src.width) * 3};
  if (src.width == size && src.height == size) {
    out.rgb = src.rgb;
    return out;
  }
  resample_rgb_u8(view, box, size, size, filter, out.rgb.data());
  return out;
}

}  // namespace coca
