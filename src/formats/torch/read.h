/* read.h: reading PyTorch files (docs/formats/torch.md) without running them.
 * The code: read.c (what every layout shares and the dispatch), zip.c (zip
 * archives), old.c (the layouts before it); reader.h is their private
 * header.
 *
 * Four layouts, told apart by their first bytes:
 *   zip     torch.save since 1.6 (and torch.jit.save archives): one top-level
 *           folder (any name) holding data.pkl, data/<key> storages, version,
 *           optional byteorder ("big" gives swapped views); TorchScript
 *           archives add constants.pkl and code/ (never run, only listed).
 *   legacy  torch.save(..., _use_new_zipfile_serialization=False): magic,
 *           protocol and sys_info pickles, the object pickle, the storage key
 *           list, then each storage as an i64 element count + raw bytes.
 *   tar     torch <= 0.1.9: a tar of sys_info, pickle, tensors and
 *           storages members (docs/formats/torch.md, Tar format).
 *   pickle  a plain pickle (pickle.dump of a dict of numpy arrays, or of
 *           tensors without storages); numpy array bytes inside the pickle
 *           are used in place; torch 0.1.x-0.3 tensors pickled by value
 *           (torch.FloatStorage(list), torch.FloatTensor(list), set_ BUILD
 *           states) are decoded.
 * A torch tensor or storage constructor left undecoded, or 0 tensors in a
 * file whose tree names one, is an error (never an empty success).
 * The pickle is interpreted by pickle.c; tensor rebuilds
 * (torch._utils._rebuild_tensor{,_v2,_v3}, _rebuild_parameter{,_with_state},
 * torch._tensor._rebuild_from_type_v2, nn.Parameter, numpy _reconstruct /
 * _frombuffer / scalar) become tensors; every other global stays an inert
 * placeholder.
 *
 * Tensors referencing the same storage key share one gt_storage; views keep
 * torch's storage offset and strides (both in elements). Checked before any
 * tensor is made: each storage's persistent-id element count x element size
 * equals its record (or legacy block) size, and each view's extent lies
 * inside its storage. Stored zip records are views of the mapped file (CRC-32
 * checked on first use; copied only when misaligned); deflated records are
 * inflated on first use. No tensor data is read at open.
 *
 * Names: the object is flattened into dotted paths in pickle order: dict keys
 * (ints in decimal), list/tuple indices, an object's attributes, where an
 * nn.Module's _parameters / _buffers / _modules add no segment (so a whole
 * pickled module gives its state_dict names). A bare tensor is "tensor";
 * TorchScript constants are "constants.<i>".
 *
 * m->meta (a MAP): kind ("zip" | "torchscript" | "legacy" | "tar" | "pickle"),
 * archive (zip folder), byteorder, version (zip record text, legacy protocol
 * number), tree (the unpickled object: tensors as GT_V_TENSOR entry indices,
 * unknown globals as MAPs {global, args, state, dictitems, listitems,
 * kwargs}, bytes as strings), constants (TorchScript), globals (sorted
 * list of the placeholder global names met). */
#ifndef GT_TORCH_H
#define GT_TORCH_H

#include "io/model.h"

/* Read the PyTorch file mapped as `file` (zip, legacy or plain pickle). */
int gt_torch_read(gt_storage *file, gt_model *m, gt_err *err);

/* Which layout p[0, len) looks like: "zip", "legacy", "tar", "pickle" or NULL. */
const char *gt_torch_sniff(const unsigned char *p, uint64_t len);

#endif
