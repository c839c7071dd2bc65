#pragma once
// PyTorch checkpoints as torch.save writes them (its zip format, the default since 1.6): a zip
// archive holding <archive>/data.pkl, a pickle of the saved object, and <archive>/data/<key>,
// one raw little-endian blob per tensor storage. OpenCLIP publishes open_clip_pytorch_model.bin
// this way (a state dict) and its trainer writes epoch_K.pt (a dict with "epoch", "name",
// "state_dict", "optimizer", maybe "scaler").
//
// The pickle is read by a small interpreter of the opcodes state dicts use. It runs no Python
// code: globals are only names. OrderedDict, torch._utils._rebuild_tensor_v2 /
// _rebuild_parameter and torch.<Type>Storage are understood; any other global reduces to an
// opaque value, which is fine where it is never used as a tensor (optimizer state, say) and an
// error naming the entry where it is. Zip entries may be stored or deflated; zip64 is read.
#include <string>

#include "coca/tensor/safetensors.h"

namespace coca {

// True when the file starts with a zip local-header signature ("PK\3\4"), as torch.save's
// archives do. False for a missing or short file (the caller's own open reports those).
bool is_zip_file(const std::string& path);

// The state dict of a PyTorch zip checkpoint, in pickle order: the top-level object when it is a
// dict of tensors, or its "state_dict" entry when it has one (a training checkpoint; the other
// entries are parsed through and ignored). Names are returned as stored (no prefix stripping).
// Float16 and bfloat16 tensors widen to float32 (as load_safetensors does), float64 stays
// float64, int64 narrows to int32 (an error if a value does not fit), bool/uint8 are u8. Views
// (storage offset, any strides) are copied out. Throws one line naming the file (and the tensor
// or pickle offset) on any structural problem.
NamedTensors load_torch_state_dict(const std::string& path);

}  // namespace coca
