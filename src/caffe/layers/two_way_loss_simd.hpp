#ifndef CAFFE_LAYERS_TWO_WAY_LOSS_SIMD_HPP_
#define CAFFE_LAYERS_TWO_WAY_LOSS_SIMD_HPP_

// CPU fast path of TwoWayLoss for float scores, dispatched at run time to the widest vectors of the CPU
// (two_way_loss_simd.cpp). As ZLPRLoss's (zlpr_loss_simd.hpp): each vector
// of float scores is widened to two halves of doubles, each lane's side
// value (x / Tn on a negative, -x / Tp on a positive, taken as x times the
// reciprocal, as the scalar SideValue) and its side's shift selected, and
// every e^(v - m) is Highway's double Exp (within 1 ulp of double); sums in
// double, counts in float lanes (exact: lines below 2^24).
//   rows:    a vector of classes of one row at a time, lanes totalled in
//            lane order (a fixed order);
//   both:    (SimdRowAndColumns, the layer's fused pass) a row as above,
//            each element's exp of the row's shift reused for its column:
//            times e^(m_row - shift of the block of rows), added to the
//            block's column sums (a double per column and side, in row
//            order): one read of the blob and one exp per element for both
//            terms;
//   columns: (SimdColumnPass, where the fused pass cannot serve) a vector
//            of neighbouring columns at a time (a lane per column), every
//            row in order: each column's sums are added in row order, as
//            the scalar loop adds them;
//   backward: a vector of one row's classes, the row's coefficients
//            broadcast, the columns' loaded lane by lane: one exp per
//            element where the columns share their shifts (the fused
//            pass's), else one per share.
//   tiles:   (spatial maps, inner > 1: SimdTileAndColumns,
//            SimdTileGradientShared) a vector of neighbouring rows (inner
//            positions of one outer slice) at a time, a lane per row, its
//            classes `inner` apart; as "both" and "backward" above, with
//            each lane's own shifts and the block's class sums kept per
//            lane.
// The scalar math (two_way_loss_math.hpp) stays the reference for double
// blobs, non-finite kept scores, lines of 2^24 or more and the HWY_SCALAR
// target; the tests hold both to the same float64 truth.

#include <cmath>

#include "caffe/layers/two_way_loss_math.hpp"

namespace caffe {
namespace xent {
namespace twoway {

/// e^(m - shift), the factor that moves a side's sums from shift m to a
/// shift at least m; 0 where m is -inf (an empty side).
inline double ShiftFactor(double m, double shift) {
  return m == -INFINITY ? 0.0 : std::exp(m - shift);
}

/// Sweeps 1 and 2 of one contiguous float row x[0..C): its shifts and sums,
/// as AccumulateShift and AccumulateElement over the row. Returns false,
/// having changed nothing, where the caller must take the scalar path (a
/// kept score that is not finite, C >= 2^24, no vector path).
bool SimdRowPass(const float* x, const float* t, const Options& o, Shifts* m, LineSums* s);

/// Columns per block of the column pass (the CPU loop's and SimdColumnPass's).
const int kColumnBlock = 64;

/// The float lanes of the CPU's vectors: SimdColumnPass takes a multiple of
/// them (0 where there is no vector path).
int SimdColumnLanes();

/// Sweeps 1 and 2 of columns first.. first + count - 1 (count a multiple of
/// SimdColumnLanes(), at most kColumnBlock) of (rows, C) float scores, each
/// row's `count` floats read as one run: their shifts and sums into
/// m[0..count) and s[0..count). Returns false, having changed nothing,
/// where the caller must take the scalar path for these columns.
bool SimdColumnPass(const float* x, const float* t, int64_t rows, const Options& o, int first,
                    int count, Shifts* m, LineSums* s);

/// The class-wise sums of a block of rows while its rows are swept in order
/// (SimdRowAndColumns), per column j of C: each side's sum of e^(v - shift)
/// over the block's rows so far, relative to the block's running shift of
/// that side (the largest row shift yet, -inf before the first element of
/// the side), and each side's count (exact floats below 2^24 rows).
struct ColumnRun {
  double neg_shift, pos_shift;
  double* neg_sum;
  double* pos_sum;
  float* negatives;
  float* positives;
};

/// SimdRowPass of one contiguous float row, and its elements added to the
/// block's column sums: where the row's shift of a side exceeds the block's,
/// the block's sums of that side are first rescaled by e^(old - new) and the
/// new shift taken; then each element adds e^(v - m_row) e^(m_row - shift),
/// the exp of the row's own sum reused (one exp per element for both
/// lines). Returns false, having changed nothing, where SimdRowPass would.
bool SimdRowAndColumns(const float* x, const float* t, const Options& o, Shifts* m, LineSums* s,
                       ColumnRun* run);

/// Backward of one contiguous float row, every column of non-zero weight
/// sharing one shift per side (column_shift.neg and .pos, at least every
/// score's side value, as SimdRowAndColumns' merged sums give): dx_c =
/// e^(v - m_row) (row_scale sigma(a_r) / S_r + e^(m_row - shift) B_c) on
/// a negative, and the same with the positives' coefficients and minus sign
/// on a positive, where B_c = column_scale sigma(a_c) / S_c is
/// column_shares[c] (negatives) and column_shares[C + c] (positives): one
/// exp per element for both shares. The caller guarantees that the row's
/// shifts are finite or -inf (an empty side). Returns false, having written
/// nothing, where it must take another path.
bool SimdRowGradientShared(const float* x, const float* t, const Options& o,
                           const LineCoefficients& row, const Shifts& column_shift,
                           const double* column_shares, double row_scale, float* dx);

/// Spatial maps (inner > 1): lanes are neighbouring rows (inner positions)
/// of one outer slice, at most SimdColumnLanes() of them, a row's classes
/// `inner` floats apart; targets with more than kTileLanes float lanes take
/// the scalar path there.
const int kTileLanes = 16;

/// The class-wise sums of a block of rows on the spatial path, lane by lane
/// while its tiles are swept (SimdTileAndColumns): lane l of class c at
/// [c * kTileLanes + l] of the negatives' arrays and [(C + c) * kTileLanes
/// + l] of the positives'; each lane's running shift of each side at
/// shifts[l] (negatives) and shifts[kTileLanes + l] (positives), -inf
/// before its first element of that side.
struct TileRun {
  double* shifts;
  double* sums;
  float* counts;
};

/// Sweeps 1 and 2 of the n neighbouring rows of a tile (x, t at its first
/// element: row l's class c at [c * inner + l]), their shifts and sums into
/// m[0..n) and s[0..n) as AccumulateShift and AccumulateElement give them,
/// and their elements added to the block's per-lane class sums (as
/// SimdRowAndColumns: each element's exp of its row's shift, times
/// e^(m_row - the lane's shift), a lane's sums rescaled when its shift
/// rises). Returns false, having changed nothing, where the caller must
/// take the scalar path (a kept score that is not finite, C >= 2^24, no
/// vector path).
bool SimdTileAndColumns(const float* x, const float* t, int64_t inner, int n, const Options& o,
                        Shifts* m, LineSums* s, TileRun* run);

/// SimdRowGradientShared for the n rows of a tile (row coefficients at
/// row_coefficients[j * rows + l] for row l of the tile), dx at
/// [c * inner + l]. The caller guarantees every row's shifts are -inf or
/// finite and at most the shared shift.
bool SimdTileGradientShared(const float* x, const float* t, int64_t inner, int n,
                            const Options& o, const double* row_coefficients, int64_t rows,
                            const Shifts& column_shift, const double* column_shares,
                            double row_scale, float* dx);

/// Backward of one contiguous float row: dx_c = ElementGradient(row,
/// column c, ...) for every c. The caller guarantees that the shifts of the
/// row (where its weight is not 0) and of every column of non-zero weight
/// are finite. Returns false, having written nothing, where it must take
/// the scalar path.
bool SimdRowGradient(const float* x, const float* t, const Options& o,
                     const LineCoefficients& row, const double* column_coefficients,
                     double row_scale, double column_scale, float* dx);

}  // namespace twoway
}  // namespace xent
}  // namespace caffe

#endif  // CAFFE_LAYERS_TWO_WAY_LOSS_SIMD_HPP_
