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
#include <functional>
#include <string>
#include <utility>
#include <vector>

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
//
// Limits (each refusal is one line naming the file and the limit): data.pkl of at most 64 MiB,
// 1M pickle values nested at most 1000 deep; zip entries that overlap or repeat a name are
// refused; what is inflated in all, the storages and the tensors each stay within a budget:
// check.max_bytes when given, else 32 x the file's size + 64 MiB. A storage key declared twice
// must be declared the same way.
struct StateDictCheck {
  // Called with every tensor's name and shape, as stored, before any tensor's bytes are read:
  // throw to refuse the file (a model checks its own names and shapes here).
  std::function<void(const std::vector<std::pair<std::string, Shape>>&)> names_and_shapes;
  uint64_t max_bytes = 0;  // the most the tensors may need, 0: from the file's size
};
NamedTensors load_torch_state_dict(const std::string& path, const StateDictCheck& check = {});

}  // namespace coca
