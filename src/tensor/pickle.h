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
  // Nesting depth, bounded (kMaxPickleDepth). Exact because a container that is already inside
  // another is never mutated again (the reader refuses it; torch.save never does it), so a
  // value's depth is final once it has a parent, and no value can contain itself.
  int depth = 1;
  bool has_parent = false;
  // Storage: blob key and element count. TensorRef: its storage, sizes and strides.
  std::string key;
  int64_t numel = 0;
  PickleRef storage;
  Shape size, stride;

  explicit PickleValue(Kind k) : kind(k) {}
  PickleValue(const PickleValue&) = delete;
  PickleValue& operator=(const PickleValue&) = delete;
  // Iterative: children whose last reference this is are taken apart here, not by recursion.
  ~PickleValue();
  // Moves every reference this value holds into `out`.
  void release_children(std::vector<PickleRef>& out);
};

// What unpickle() accepts at most; each limit's error names it.
constexpr int kMaxPickleDepth = 1000;            // nesting of containers
constexpr size_t kMaxPickleValues = 1u << 20;    // values created (~250 bytes each; ~20 a tensor)
constexpr size_t kMaxPickleBytes = 64u << 20;    // size of data.pkl (a state dict of 100k tensors is ~15 MB)

inline const char* pickle_kind_name(PickleValue::Kind k) {
  static const char* names[] = {"None", "bool", "int", "float", "str", "bytes", "tuple",
                                "list", "dict", "global", "storage", "tensor", "object"};
  return names[k];
}

// The object data.pkl holds. `where` starts every error message ("torch checkpoint <path>: ").
PickleRef unpickle(const std::vector<char>& data, const std::string& where);

}  // namespace coca
