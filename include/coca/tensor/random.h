#pragma once
// A seeded generator whose streams are identical on every machine and compiler: xoshiro256**
// seeded through splitmix64, uniforms from the top 53 bits, normals by Box-Muller in double.
// (std::normal_distribution is implementation-defined, so it is not used.)
#include <array>
#include <cstdint>

namespace coca {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) { seed_with(seed); }
  void seed_with(uint64_t seed);
  uint64_t next_u64();
  double uniform();                       // [0, 1)
  double normal();                        // mean 0, std 1
  uint64_t below(uint64_t n);             // uniform integer in [0, n)
  // Exact state, for checkpoints that must resume bit-identically.
  std::array<uint64_t, 5> state() const { return {s_[0], s_[1], s_[2], s_[3], spare_bits_}; }
  void set_state(const std::array<uint64_t, 5>& st);

 private:
  uint64_t s_[4];
  uint64_t spare_bits_ = 0;  // a cached second Box-Muller normal (bit pattern), 0 = none
  bool has_spare_ = false;
};

}  // namespace coca
