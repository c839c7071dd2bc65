#pragma once
// Branch-free float32 exp and erf that the compiler can vectorise (libm's expf/erff are
// scalar calls). Accuracy: exp within ~2 ulp over its range; erf within ~1e-7 absolute,
// i.e. at float32 rounding. float64 code keeps std::exp / std::erf.
#include <cmath>
#include <cstdint>
#include <cstring>

namespace coca::cpu {

inline float fast_exp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  // n = round(x / ln 2) by the 1.5 * 2^23 trick (exact for |n| < 2^22).
  const float shifted = x * 1.44269504088896341f + 12582912.0f;
  const float n = shifted - 12582912.0f;
  // r = x - n ln2, with ln 2 split into a part exact in float and a correction.
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  // e^r on [-ln2/2, ln2/2]: a degree-6 minimax polynomial (Cephes' expf coefficients).
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  const int32_t e = (static_cast<int32_t>(n) + 127) << 23;  // 2^n
  float scale;
  std::memcpy(&scale, &e, 4);
  return y * scale;
}

// exp for probabilities: fast_exp, except that arguments below -87 (where e^x is under float's
// smallest normal) give exactly 0, so that a masked (-inf) score has probability 0.
inline float fast_exp_or_zero(float x) {
  const float y = fast_exp(x);
  return x < -87.0f ? 0.0f : y;
}

// The exp of the softmax-like kernels: vectorisable in float32, libm in float64 (whose
// results are unchanged).
inline float softmax_exp(float x) { return fast_exp_or_zero(x); }
inline double softmax_exp(double x) { return std::exp(x); }

// erf(x) = x P(x^2) / Q(x^2) on [-4, 4] (erf is +-1 to float precision beyond); the rational
// minimax coefficients are those Eigen and XLA use for float erf.
inline float fast_erf(float x) {
  x = x < -4.0f ? -4.0f : (x > 4.0f ? 4.0f : x);
  const float x2 = x * x;
  float p = -2.72614225801306e-10f;
  p = p * x2 + 2.77068142495902e-08f;
  p = p * x2 + -2.10102402082508e-06f;
  p = p * x2 + -5.69250639462346e-05f;
  p = p * x2 + -7.34990630326855e-04f;
  p = p * x2 + -2.95459980854025e-03f;
  p = p * x2 + -1.60960333262415e-02f;
  p = p * x;
  float q = -1.45660718464996e-05f;
  q = q * x2 + -2.13374055278905e-04f;
  q = q * x2 + -1.68282697438203e-03f;
  q = q * x2 + -7.37332916720468e-03f;
  q = q * x2 + -1.42647390514189e-02f;
  return p / q;
}

}  // namespace coca::cpu
