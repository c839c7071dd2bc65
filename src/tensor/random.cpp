#include "coca/tensor/random.h"

#include <cmath>
#include <cstring>

namespace coca {

static uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void Generator::seed_with(uint64_t seed) {
  uint64_t x = seed;
  for (auto& s : s_) s = splitmix64(x);
  has_spare_ = false;
  spare_bits_ = 0;
}

uint64_t Generator::next_u64() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Generator::uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

uint64_t Generator::below(uint64_t n) {
  if (n <= 1) return 0;
  // Rejection sampling keeps the draw exactly uniform.
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t r;
  do r = next_u64(); while (r >= limit);
  return r % n;
}

double Generator::normal() {
  if (has_spare_) {
    has_spare_ = false;
    double v;
    std::memcpy(&v, &spare_bits_, 8);
    spare_bits_ = 0;
    return v;
  }
  double u1 = uniform();
  while (u1 <= 0.0) u1 = uniform();
  const double u2 = uniform();
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double theta = 2.0 * M_PI * u2;
  const double second = r * std::sin(theta);
  std::memcpy(&spare_bits_, &second, 8);
  has_spare_ = true;
  return r * std::cos(theta);
}

void Generator::set_state(const std::array<uint64_t, 5>& st) {
  for (int i = 0; i < 4; ++i) s_[i] = st[i];
  spare_bits_ = st[4];
  // A cached normal is stored by its bits; an all-zero pattern means none is cached
  // (the exact value +0.0 is never cached in practice: it would need r*sin(theta) == +0).
  has_spare_ = st[4] != 0;
}

}  // namespace coca
