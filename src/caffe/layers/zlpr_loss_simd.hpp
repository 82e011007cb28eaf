#ifndef CAFFE_LAYERS_ZLPR_LOSS_SIMD_HPP_
#define CAFFE_LAYERS_ZLPR_LOSS_SIMD_HPP_

// CPU fast paths of ZLPRLoss for float blobs, dispatched at run time to the
// widest vectors of the CPU (zlpr_loss_simd.cpp): contiguous rows ((N, C)
// scores, inner = 1), a row's classes along the lanes, and spatial maps
// ((N, C, H, W) and the like), neighbouring rows along the lanes.
//
// The scalar math spends its time in one double exp per element and pass.
// Here each vector of float scores is widened to two halves of doubles and
// every e^(v - m) is Highway's double Exp (within 1 ulp of double), with
// the argument v - m exact as in the scalar ShiftedExp: the same double
// values to within an ulp of double, rounded once to float at the end. One
// exp per element: each lane's value (x on a negative, -x on a positive) and
// its side's shift are selected first. The shifts are the scalar ones
// exactly (AccumulateShift's max, in any order: a max does not round).
//
// Sums, in double, in a fixed order (the same bits for any thread count):
// - contiguous rows: each side's lanes summed along the row, then totalled
//   in lane order; the last C % lanes elements are one more vector from
//   padded copies, their extra lanes in neither set;
// - spatial maps: a lane is a row, its sums added class by class, the
//   scalar loop's additions in the scalar loop's order. The terms differ from
//   the scalar loop's only by Highway's Exp against the C library's exp
//   (each within an ulp of double), so the sums are not always bit-identical
//   to the scalar loop's, but both are within about C ulps of double of the
//   exact sum, far below the one float rounding of the results.
//
// Spatial maps are read as they lie, x[c * inner + j] for a vector of
// neighbouring rows j one load: forward by tiles of kTileRows rows, per
// vector of rows both sweeps over the classes (its shifts and sums in
// registers); backward by blocks of kGradientRows rows, each row's shifts
// and factors once, then class by class over the whole block (long
// contiguous runs). The rows that do not fill a vector at the end of a tile
// or block are one more vector from padded copies.
//
// Which formula lives where: the row's loss and coefficients stay
// FinishRow's (zlpr_loss_math.hpp), from the sums this file returns; the
// gradient is SideGradient's (scale / S) e, the same roundings as
// ElementGradient (scale / S once per row and side), so it differs from the
// scalar loop's only where the two exps do. The scalar math stays
// the reference, used for double blobs, rows with a non-finite kept score
// or shift, rows of 2^24 classes or more and the HWY_SCALAR target; the
// tests hold both to the same float64 truth.

#include <cmath>
#include <cstdint>

#include "caffe/layers/zlpr_loss_math.hpp"

namespace caffe {
namespace xent {
namespace zlpr {

/// Pass 1 of one contiguous float row x[0..C), t[0..C): the two shifts and
/// the row sums, as AccumulateShift and AccumulateElement over the row.
/// Returns false, having changed nothing, where the caller must take the
/// scalar path: a score of a kept element that is not finite (the scalar
/// math gives the limits for +-inf and NaN for NaN), C >= 2^24 (lane counts
/// are exact floats), or no vector path on this target.
bool SimdRowSums(const float* x, const float* t, const RowOptions& opt,
                 RowShifts<float>* shifts, RowSums* sums);

/// Pass 2 of one contiguous float row whose two shifts are finite:
/// dx_c = ElementGradient(coef, x_c, t_c, opt, scale). Returns false,
/// having written nothing, where the caller must take the scalar path (the
/// same cases as SimdRowSums).
bool SimdRowGradient(const float* x, const float* t, const RowOptions& opt,
                     const RowCoefficients& coef, double scale, float* dx);

/// Rows of a spatial map that forward takes together (a tile): their shifts
/// and sums stay in registers and L1 while the loops read the map class by
/// class, contiguous along the inner dimension.
const int kTileRows = 64;

/// Rows of a spatial map that backward takes together (a block): its loop
/// reads the block's rows of one class after the other, long contiguous runs
/// of the map (tiles of kTileRows read it slower there).
const int kGradientRows = 1024;

/// A set of the rows of a tile, or of one vector of rows: bit j for row j.
typedef uint64_t TileRows;
static_assert(kTileRows <= 64, "a tile's rows are the bits of a TileRows");

/// The first `count` rows of a tile (count <= kTileRows).
inline TileRows AllRows(int count) {
  return count <= 0 ? 0 : ~TileRows(0) >> (64 - count);
}

/// Whether a row's coefficients take the vector paths of pass 2.
inline bool FiniteShifts(const RowCoefficients& coef) {
  return std::isfinite(coef.neg_shift) && std::isfinite(coef.pos_shift);
}

/// Pass 1 of n <= kTileRows neighbouring float rows of a spatial map, row j's
/// element c at x[c * inner + j] (targets t likewise): for each row it
/// handles, shifts[j] and sums[j] set as AccumulateShift and
/// AccumulateElement over the row from ZeroShifts and ZeroSums. Returns the
/// rows it handled; the others, left unchanged, take the scalar loop: rows
/// with a score of a kept element that is not finite, and every row where
/// C >= 2^24 or this target has no vector path.
TileRows SimdTileSums(const float* x, const float* t, int64_t inner, int n,
                      const RowOptions& opt, RowShifts<float>* shifts, RowSums* sums);

/// Pass 2 of n <= kGradientRows neighbouring float rows of a spatial map
/// (laid out as for SimdTileSums), the first of them row `first` of `rows`:
/// for each row j with FiniteShifts, dx[c * inner + j] =
/// ElementGradient(LoadCoefficients(coefficients, first + j, rows),
/// x[c * inner + j], t[c * inner + j], opt, s_j) with s_j = scale
/// (+ row_diff[j] where row_diff is not NULL); the other rows are left
/// unwritten for the scalar loop. Returns false, having written nothing,
/// where the scalar loop takes every row (the cases of SimdTileSums).
bool SimdBlockGradient(const float* x, const float* t, int64_t inner, int n,
                       const RowOptions& opt, const double* coefficients, int64_t first,
                       int64_t rows, double scale, const float* row_diff, float* dx);

}  // namespace zlpr
}  // namespace xent
}  // namespace caffe

#endif  // CAFFE_LAYERS_ZLPR_LOSS_SIMD_HPP_
