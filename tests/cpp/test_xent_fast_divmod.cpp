// FastDivmod (caffe/util/xent_device.hpp): the index math the CUDA kernels
// use for an element's class, (i / inner) % C, without a division per
// element. The kernels run only on a GPU; the same class computes the same
// bits on the host (a 64-bit product for __umulhi), so these CPU tests hold
// it to / and % for every divisor shape the proof covers.
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/util/xent_device.hpp"

namespace caffe {
namespace {

void ExpectDivides(uint32_t d, uint32_t n) {
  const xent::FastDivmod f(d);
  ASSERT_EQ(f.Div(n), n / d) << "n = " << n << ", d = " << d;
  ASSERT_EQ(f.Mod(n), n % d) << "n = " << n << ", d = " << d;
}

TEST(XentFastDivmodTest, SmallDivisorsAllSmallDividends) {
  for (uint32_t d = 1; d <= 300; ++d) {
    for (uint32_t n = 0; n < 5000; ++n) ExpectDivides(d, n);
  }
}

TEST(XentFastDivmodTest, DividendsNearTheTopOfTheRange) {
  // n up to 2^31 - 1 (a Blob's largest flat index is INT_MAX - 1), where
  // the proof's error term n·e / (d·2^(31+l)) is largest.
  const uint32_t top = 0x7fffffffu;
  std::vector<uint32_t> divisors;
  for (int l = 0; l <= 31; ++l) {
    const uint32_t p = uint32_t(1) << l;
    divisors.push_back(p);
    if (p > 1) divisors.push_back(p - 1);
    if (p < 0x80000000u) divisors.push_back(p + 1);
  }
  for (uint32_t d : {3u, 7u, 10u, 21u, 40u, 641u, 1000u, 17000u, 21845u, 65537u, 1000003u,
                     0x7ffffffeu, 0x7fffffffu}) {
    divisors.push_back(d);
  }
  for (uint32_t d : divisors) {
    for (uint32_t k = 0; k < 2000; ++k) ExpectDivides(d, top - k);
    // Multiples of d and their neighbours, the places a rounding error shows.
    for (uint32_t q : {1u, 2u, 3u, 1000u, 65535u}) {
      const uint64_t m = uint64_t(q) * d;
      for (int delta = -1; delta <= 1; ++delta) {
        const int64_t n = static_cast<int64_t>(m) + delta;
        if (n >= 0 && n <= top) ExpectDivides(d, static_cast<uint32_t>(n));
      }
    }
  }
}

TEST(XentFastDivmodTest, PseudoRandomPairs) {
  uint64_t state = 0x9e3779b97f4a7c15ull;  // a fixed xorshift sequence
  auto next = [&state]() {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  for (int k = 0; k < 2000000; ++k) {
    const uint32_t n = static_cast<uint32_t>(next()) & 0x7fffffffu;
    const int bits = 1 + static_cast<int>(next() % 31);  // divisors of every size
    const uint32_t d = 1 + static_cast<uint32_t>(next() & ((uint64_t(1) << bits) - 1));
    ExpectDivides(d, n);
  }
}

}  // namespace
}  // namespace caffe
