/* quant.h: ggml's block-quantised element types (GGUF tensors).
 *
 * A block-quantised tensor stores its elements in fixed blocks of
 * gt_dtype_block(dt) elements and gt_dtype_size(dt) bytes (layouts in
 * docs/formats/gguf.md). Such a view is valid only when its last dimension
 * has stride 1 and whole blocks (its size a multiple of the block length,
 * every other stride a multiple of it too): rows of whole blocks. Views that
 * would cut a block are refused where they are made (tensor.c).
 *
 * Dequantisation computes, per element, exactly the float32 expression of
 * ggml's reference dequantize_row_* (ggml-quants.c), in the same order of
 * operations (no fused multiply-add: the build is ISO C, whose default is
 * -ffp-contract=off), so results are bit-equal to ggml's and to gguf-py's
 * quants.dequantize. Quantisation (Q8_0, Q4_0) follows ggml's
 * quantize_row_*_ref rounding, bit-identical to gguf-py's quants.quantize. */
#ifndef GT_QUANT_H
#define GT_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "tensor/tensor.h"

/* Whether dt is a block-quantised type. */
int gt_dtype_is_quant(gt_dtype dt);

/* Decode nblocks consecutive blocks of type dt at src into
 * nblocks * gt_dtype_block(dt) float32 values at dst. */
void gt_dequant_blocks(gt_dtype dt, const unsigned char *src, float *dst,
                       size_t nblocks);

/* Encode n float32 values (n a multiple of 32) as Q8_0 or Q4_0 blocks. */
void gt_quantize_q8_0(const float *src, unsigned char *dst, size_t n);
void gt_quantize_q4_0(const float *src, unsigned char *dst, size_t n);

/* Checks that view t of a quantised sdtype keeps whole blocks (see above). */
int gt_quant_view_check(const gt_tensor *t, gt_err *err);

/* gt_copy_into for a quantised source: ddt is the same quantised type (raw
 * blocks, row by row) or any type a float32 converts to. */
int gt_quant_copy_into(const gt_tensor *t, gt_dtype ddt, void *dst,
                       gt_err *err);

/* gt_stream for a quantised source: pieces of whole rows through buf. */
int gt_quant_stream(const gt_tensor *t, gt_dtype ddt, void *buf,
                    size_t bufsize,
                    int (*sink)(void *ctx, const void *bytes, size_t n,
                                gt_err *err),
                    void *ctx, gt_err *err);

#endif
