#pragma once
// The subset of Python's pickle that torch.save's data.pkl uses, as values: an interpreter that
// builds them and never runs Python code. Globals are only names: collections.OrderedDict
// becomes a dict, torch._utils._rebuild_tensor_v2 / _rebuild_parameter a tensor reference
// (storage, offset, sizes, strides; its bytes stay in the archive), BINPERSID a storage
// reference; any other global called (REDUCE, NEWOBJ) gives an opaque value naming it. Opcodes
// outside the subset are an error naming the opcode and its offset.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "coca/tensor/tensor.h"

namespace coca {

struct PickleValue;
using PickleRef = std::shared_ptr<PickleValue>;

struct PickleValue {
  enum Kind { None, Bool, Int, Float, Str, Bytes, Tuple, List, Dict, Global, Storage, TensorRef, Opaque };
  Kind kind;
  int64_t i = 0;  // Int, Bool; TensorRef: storage offset
  double f = 0;   // Float
  std::string s;  // Str, Bytes; Global: "module.name"; Opaque: what made it; Storage: the type's global
  std::vector<PickleRef> items;                          // Tuple, List
  std::vector<std::pair<PickleRef, PickleRef>> entries;  // Dict, in insertion order
  int depth = 1;  // nesting, bounded so that destruction cannot overflow the stack
  // Storage: blob key and element count. TensorRef: its storage, sizes and strides.
  std::string key;
  int64_t numel = 0;
  PickleRef storage;
  Shape size, stride;

  explicit PickleValue(Kind k) : kind(k) {}
};

inline const char* pickle_kind_name(PickleValue::Kind k) {
  static const char* names[] = {"None", "bool", "int", "float", "str", "bytes", "tuple",
                                "list", "dict", "global", "storage", "tensor", "object"};
  return names[k];
}

// The object data.pkl holds. `where` starts every error message ("torch checkpoint <path>: ").
PickleRef unpickle(const std::vector<char>& data, const std::string& where);

}  // namespace coca
