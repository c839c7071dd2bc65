#pragma once
// The loader's resampler as it was before the vertical-first, fixed-tap version in
// src/data/resample.cpp: one float horizontal pass over every source row under the crop,
// then the vertical pass, weights recomputed per call. bench_loader runs it next to the
// current one so that both figures come from the same run on the same machine load.
#include <algorithm>
#include <cmath>
#include <vector>

#include "coca/data/resample.h"

namespace coca::previous {
namespace detail {

inline double filter_support(ResampleFilter f) {
  switch (f) {
    case ResampleFilter::bilinear: return 1.0;
    case ResampleFilter::bicubic: return 2.0;
    case ResampleFilter::lanczos3: return 3.0;
  }
  return 1.0;
}

inline double sinc(double x) {
  if (x == 0.0) return 1.0;
  x *= M_PI;
  return std::sin(x) / x;
}

inline double filter_value(ResampleFilter f, double x) {
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

// Per output index: the first source index, the tap count, and normalised weights.
struct AxisPlan {
  std::vector<int> first;
  std::vector<int> count;
  std::vector<float> weights;  // out_size * taps
  int taps = 0;
};

inline void plan_axis(AxisPlan& p, int in_size, double box0, double box_len, int out_size, ResampleFilter f) {
  const double scale = box_len / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = filter_support(f) * filterscale;
  p.taps = static_cast<int>(std::ceil(support)) * 2 + 1;
  p.first.assign(static_cast<size_t>(out_size), 0);
  p.count.assign(static_cast<size_t>(out_size), 0);
  p.weights.assign(static_cast<size_t>(out_size) * p.taps, 0.0f);
  std::vector<double> w(static_cast<size_t>(p.taps));
  for (int o = 0; o < out_size; ++o) {
    const double center = box0 + (o + 0.5) * scale;
    int lo = static_cast<int>(center - support + 0.5);
    int hi = static_cast<int>(center + support + 0.5);
    lo = std::clamp(lo, 0, in_size - 1);
    hi = std::clamp(hi, lo + 1, in_size);
    int n = std::min(hi - lo, p.taps);
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
    for (int k = 0; k < n; ++k) p.weights[static_cast<size_t>(o) * p.taps + k] = static_cast<float>(w[k] / total);
  }
}

struct Scratch {
  AxisPlan xs, ys;
  std::vector<float> rows;  // horizontally resampled source rows [rows, out_w*3]
  std::vector<float> acc;   // one output row [out_w*3]
};

inline Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// Runs both passes; calls sink(y, row) with each output row as out_w*3 floats in 0..255.
template <typename Sink>
void resample_core(const RgbView& src, const SourceBox& box, int out_w, int out_h, ResampleFilter f, Sink&& sink) {
  COCA_CHECK(src.width > 0 && src.height > 0 && out_w > 0 && out_h > 0 && box.w > 0 && box.h > 0,
             "resample: bad geometry (source ", src.width, "x", src.height, ", box ", box.w, "x", box.h,
             ", output ", out_w, "x", out_h, ")");
  Scratch& s = scratch();
  plan_axis(s.xs, src.width, box.x0, box.w, out_w, f);
  plan_axis(s.ys, src.height, box.y0, box.h, out_h, f);
  const int row_lo = s.ys.first[0];
  int row_hi = row_lo;
  for (int y = 0; y < out_h; ++y) row_hi = std::max(row_hi, s.ys.first[y] + s.ys.count[y]);
  const int nrows = row_hi - row_lo;
  const size_t row_len = static_cast<size_t>(out_w) * 3;
  s.rows.resize(static_cast<size_t>(nrows) * row_len);
  s.acc.resize(row_len);
  // Horizontal pass over the source rows the vertical filter will touch.
  for (int r = 0; r < nrows; ++r) {
    const uint8_t* in = src.data + static_cast<int64_t>(row_lo + r) * src.stride;
    float* dst = s.rows.data() + static_cast<size_t>(r) * row_len;
    for (int x = 0; x < out_w; ++x) {
      const uint8_t* p = in + static_cast<size_t>(s.xs.first[x]) * 3;
      const float* w = s.xs.weights.data() + static_cast<size_t>(x) * s.xs.taps;
      float r0 = 0, g0 = 0, b0 = 0;
      const int n = s.xs.count[x];
      for (int k = 0; k < n; ++k) {
        r0 += w[k] * p[k * 3];
        g0 += w[k] * p[k * 3 + 1];
        b0 += w[k] * p[k * 3 + 2];
      }
      dst[x * 3] = r0;
      dst[x * 3 + 1] = g0;
      dst[x * 3 + 2] = b0;
    }
  }
  // Vertical pass, contiguous along the row so that it vectorises.
  for (int y = 0; y < out_h; ++y) {
    float* acc = s.acc.data();
    const float* w = s.ys.weights.data() + static_cast<size_t>(y) * s.ys.taps;
    const int first = s.ys.first[y] - row_lo;
    const float* r0 = s.rows.data() + static_cast<size_t>(first) * row_len;
    for (size_t i = 0; i < row_len; ++i) acc[i] = w[0] * r0[i];
    for (int k = 1; k < s.ys.count[y]; ++k) {
      const float wk = w[k];
      const float* rk = r0 + static_cast<size_t>(k) * row_len;
      for (size_t i = 0; i < row_len; ++i) acc[i] += wk * rk[i];
    }
    sink(y, acc);
  }
}

}  // namespace detail

inline void resample_rgb_normalized(const RgbView& src, const SourceBox& box, int out_w, int out_h,
                             ResampleFilter filter, const float mean[3], const float std[3], float* out) {
  float scale[3], shift[3];
  for (int c = 0; c < 3; ++c) {
    scale[c] = 1.0f / (255.0f * std[c]);
    shift[c] = -mean[c] / std[c];
  }
  const size_t plane = static_cast<size_t>(out_w) * out_h;
  detail::resample_core(src, box, out_w, out_h, filter, [&](int y, const float* row) {
    for (int c = 0; c < 3; ++c) {
      float* dst = out + c * plane + static_cast<size_t>(y) * out_w;
      for (int x = 0; x < out_w; ++x) {
        // Clamped to the 8-bit range first, as an image resized to uint8 then normalised.
        const float v = std::min(std::max(row[x * 3 + c], 0.0f), 255.0f);
        dst[x] = v * scale[c] + shift[c];
      }
    }
  });
}

}  // namespace coca::previous
