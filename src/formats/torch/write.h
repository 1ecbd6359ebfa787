/* torch_write.h: writing a torch.save zip archive (docs/formats/torch.md#zip-archive, docs/formats/torch.md#pickled-object).
 *
 * The archive is what torch.save writes with its default protocol 2:
 * <folder>/data.pkl, <folder>/byteorder ("little"), <folder>/data/<key> per
 * storage, <folder>/version ("3\n"), every record stored and 64-byte aligned.
 * <folder> is the target's base name without its last extension, as torch
 * names it ("archive" when that is empty or not plain UTF-8).
 *
 * What is pickled: `tree` when not NULL, a value tree whose GT_V_TENSOR
 * leaves index s->entries (MAP -> dict, or collections.OrderedDict when it
 * is non-empty and holds only tensors; LIST -> list; INT, FLOAT, STR, BOOL,
 * NIL -> int, float, str, bool, None); otherwise an OrderedDict of all the
 * entries by name, in order. Each tensor is
 * torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False,
 * OrderedDict()), with the storage a persistent id
 * ('storage', torch.<X>Storage, key, 'cpu', numel), which
 * torch.load(weights_only=True) accepts in torch 1.13 and 2.x.
 *
 * Storages: tensors presented in their stored dtype (no lazy cast, no byte
 * swap, no negative stride) that are views of one gt_storage are written
 * once, as the byte range their views cover, and keep their offsets and
 * strides, so torch sees them share a storage. Every other tensor gets a
 * record of its own, materialised contiguously from its view through a
 * bounded buffer. dtypes that torch 1.13 has no storage class for (float8,
 * uint16/32/64, strings) are refused, naming the tensor.
 *
 * ZIP64 fields are used from the real 4 GiB limits; tests lower them with
 * gt_zipw_test_thresholds (core.testing.zip64_at). */
#ifndef GT_TORCH_WRITE_H
#define GT_TORCH_WRITE_H

#include "io/model.h"

int gt_torch_write(const char *path, const gt_save *s, const gt_value *tree,
                   gt_err *err);

#endif
