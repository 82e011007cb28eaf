// The float gradient of MultiLabelSoftmaxLoss that the CUDA kernel runs
// for float blobs (ElementGradientFloat, ShiftedExpFloat in
// multi_label_softmax_loss_math.hpp), checked on the CPU, where the same
// host/device functions compile: e^(x - m) against exp in double, and
// the gradient against the same formula in double, within the bounds
// docs/multi_label_softmax_loss.md gives for float32 gradients (where
// e^(x - m) is a normal float; below, an absolute bound).
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/layers/multi_label_softmax_loss_math.hpp"

namespace caffe {
namespace {

namespace ml = xent::multilabel;

/// The float ulp at |v| (v rounded to float).
double Ulp(double v) {
  const float f = std::fabs(static_cast<float>(v));
  return std::nextafter(f, std::numeric_limits<float>::infinity()) - f;
}

TEST(XentFloatGradientTest, ShiftedExpWithinTwoUlps) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> max_dist(-32000.0f, 32000.0f);
  std::uniform_real_distribution<float> gap_dist(0.0f, 110.0f);
  double worst = 0.0;
  for (int k = 0; k < 200000; ++k) {
    const float m = k % 4 == 0 ? max_dist(rng) / 1000.0f : max_dist(rng);
    const float x = m - gap_dist(rng);
    const float e = ml::ShiftedExpFloat(x, ml::MakeFloatRowShift(m));
    const double exact = std::exp(static_cast<double>(x) - static_cast<double>(m));
    const double ulps = std::fabs(e - exact) / Ulp(exact);
    worst = std::max(worst, ulps);
    ASSERT_LE(ulps, 2.0) << "x " << x << " m " << m;
  }
  EXPECT_GT(worst, 0.0);  // the check saw rounding at all
}

TEST(XentFloatGradientTest, ShiftedExpEdges) {
  for (float m : {0.0f, -0.0f, 1.5f, -7.25f, 1000.0f, -32000.0f, 32639.0f}) {
    const ml::FloatRowShift shift = ml::MakeFloatRowShift(m);
    EXPECT_EQ(ml::ShiftedExpFloat(m, shift), 1.0f) << m;  // the max: exactly 1
    EXPECT_EQ(ml::ShiftedExpFloat(-std::numeric_limits<float>::infinity(), shift), 0.0f) << m;
    EXPECT_EQ(ml::ShiftedExpFloat(m - 200.0f, shift), 0.0f) << m;
  }
}

/// Rows of C classes, scores N(0, 20²) (x - m spans ~150), soft targets
/// with cancelling elements, class weights; coefficients by the scalar
/// row math (double exps), then every element's float gradient against
/// the same formula in double.
TEST(XentFloatGradientTest, GradientWithinTheDocumentedBounds) {
  std::mt19937 rng(11);
  std::normal_distribution<float> score(0.0f, 20.0f);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  const double u = std::ldexp(1.0, -24);
  int checked_cancel = 0, checked_zero = 0, checked_plain = 0, checked_subnormal = 0;
  for (int row = 0; row < 400; ++row) {
    const int C = 2 + row % 97;
    ml::RowOptions opt = {C, row % 3, row % 2 ? 0.1 : 0.0, false, 0.0};
    std::vector<float> x(C), t(C);
    std::vector<double> w(C);
    for (int c = 0; c < C; ++c) {
      x[c] = row % 5 == 0 ? score(rng) * 0.05f : score(rng);
      t[c] = unit(rng) < 0.3f ? unit(rng) : 0.0f;
      w[c] = static_cast<float>(0.5 + unit(rng));
    }
    t[row % C] = 1.0f;  // a positive per row
    float m = x[0];
    for (int c = 1; c < C; ++c) m = ml::MaxOf(m, x[c]);
    ml::RowSums sums = ml::ZeroSums();
    for (int c = 0; c < C; ++c) ml::AccumulateElement(m, x[c], t[c], w[c], opt, &sums);
    ml::RowCoefficients coef;
    ml::FinishRow(m, sums, opt, &coef);
    ASSERT_TRUE(ml::FloatGradientApplies(coef));
    const double scale = 0.75;
    const double k = scale * coef.q_total * coef.inv_sum_exp;
    for (int c = 0; c < C; ++c) {
      const float g = ml::ElementGradientFloat(coef, x[c], t[c], w[c], scale);
      const double e = ml::ShiftedExp(m, x[c]);
      if (e < std::numeric_limits<float>::min()) {
        // A subnormal e^(x - m) is rounded at 2^-150 absolute, not relative;
        // k = scale Q / S multiplies that: the ulp bounds hold for normal e.
        const double q = scale * (coef.a * w[c] * t[c] + coef.b);
        EXPECT_LE(std::fabs(g - (k * e - q)), k * std::ldexp(1.0, -150) + 4.5 * Ulp(k * e - q))
            << "row " << row << " class " << c;
        ++checked_subnormal;
        continue;
      }
      const double qp = k * e;                                         // scale Q p_c
      const double q = scale * (coef.a * w[c] * t[c] + coef.b);       // scale q_c
      const double exact = qp - q;
      const double terms = qp + q;
      if (t[c] == 0.0f && opt.smoothing == 0.0) {
        EXPECT_LE(std::fabs(g - exact) / Ulp(exact), 4.5) << "row " << row << " class " << c;
        ++checked_zero;
      } else if (std::fabs(exact) >= terms / 2) {
        EXPECT_LE(std::fabs(g - exact) / Ulp(exact), 8.5) << "row " << row << " class " << c;
        ++checked_plain;
      } else {
        EXPECT_LE(std::fabs(g - exact), 4 * u * terms + 0.5 * Ulp(exact))
            << "row " << row << " class " << c;
        ++checked_cancel;
      }
    }
  }
  EXPECT_GT(checked_zero, 1000);
  EXPECT_GT(checked_plain, 1000);
  EXPECT_GT(checked_cancel, 10);
  EXPECT_GT(checked_subnormal, 10);
}

TEST(XentFloatGradientTest, RowsTheFloatPathLeavesToDouble) {
  ml::RowCoefficients coef = {0.0, 1.0, 1.0, 1.0, 0.0};
  EXPECT_TRUE(ml::FloatGradientApplies(coef));
  coef.max = 32640.0;  // |m| too large for the exact reduction
  EXPECT_FALSE(ml::FloatGradientApplies(coef));
  coef.max = std::numeric_limits<double>::infinity();
  EXPECT_FALSE(ml::FloatGradientApplies(coef));
  coef.max = std::numeric_limits<double>::quiet_NaN();
  EXPECT_FALSE(ml::FloatGradientApplies(coef));
  const ml::RowCoefficients ignored = {0.0, 1.0, 0.0, 0.0, 0.0};
  EXPECT_FALSE(ml::FloatGradientApplies(ignored));
}

}  // namespace
}  // namespace caffe
