#include "coca/tensor/torch_archive.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <unordered_map>

#include "pickle.h"
#include "zip_reader.h"

namespace coca {

namespace {

// ---- tensors --------------------------------------------------------------------------------

enum class Elem { f32, f64, f16, bf16, i64, i32, u8, boolean };

bool storage_elem(const std::string& type, Elem& e, size_t& bytes) {
  static const std::map<std::string, std::pair<Elem, size_t>> types = {
      {"torch.FloatStorage", {Elem::f32, 4}},   {"torch.DoubleStorage", {Elem::f64, 8}},
      {"torch.HalfStorage", {Elem::f16, 2}},    {"torch.BFloat16Storage", {Elem::bf16, 2}},
      {"torch.LongStorage", {Elem::i64, 8}},    {"torch.IntStorage", {Elem::i32, 4}},
      {"torch.ByteStorage", {Elem::u8, 1}},     {"torch.BoolStorage", {Elem::boolean, 1}}};
  auto it = types.find(type);
  if (it == types.end()) return false;
  e = it->second.first;
  bytes = it->second.second;
  return true;
}

// Copies the (offset, size, stride) view of `blob` into a contiguous tensor of our dtypes.
Tensor materialize(const PickleValue& t, const std::vector<char>& blob, Elem elem, size_t esize,
                   const std::string& where) {
  const int64_t numel = shape_numel(t.size);
  const size_t bytes = static_cast<size_t>(numel) * esize;
  bool contiguous = true;
  for (int64_t d = static_cast<int64_t>(t.size.size()) - 1, expect = 1; d >= 0; --d) {
    if (t.size[d] != 1 && t.stride[d] != expect) contiguous = false;
    expect *= t.size[d];
  }
  // The common case, a contiguous view, is read in place; any other is gathered into `dense`.
  std::vector<char> dense;
  const char* src_bytes = numel > 0 ? blob.data() + static_cast<size_t>(t.i) * esize : nullptr;
  if (!contiguous && numel > 0) {
    dense.resize(bytes);
    src_bytes = dense.data();
    const size_t nd = t.size.size();
    std::vector<int64_t> idx(nd, 0);
    int64_t src = t.i;
    for (int64_t n = 0; n < numel; ++n) {
      std::memcpy(dense.data() + static_cast<size_t>(n) * esize, blob.data() + static_cast<size_t>(src) * esize, esize);
      for (size_t d = nd; d-- > 0;) {  // odometer over the view's index, last dimension fastest
        src += t.stride[d];
        if (++idx[d] < t.size[d]) break;
        src -= t.stride[d] * t.size[d];
        idx[d] = 0;
      }
    }
  }
  Tensor out;
  switch (elem) {
    case Elem::f32: case Elem::f64: case Elem::bf16: case Elem::i32: case Elem::u8: case Elem::boolean: {
      const DType dt = elem == Elem::f32    ? DType::f32
                       : elem == Elem::f64  ? DType::f64
                       : elem == Elem::bf16 ? DType::bf16
                       : elem == Elem::i32  ? DType::i32
                                            : DType::u8;
      out = Tensor::empty(t.size, dt);
      if (bytes) std::memcpy(out.raw_data(), src_bytes, bytes);
      if (dt == DType::bf16) out = out.to(DType::f32);
      break;
    }
    case Elem::f16: {
      out = Tensor::empty(t.size, DType::f32);
      float* p = out.data<float>();
      for (int64_t k = 0; k < numel; ++k) {
        uint16_t h;
        std::memcpy(&h, src_bytes + 2 * k, 2);
        p[k] = half_to_float(h);
      }
      break;
    }
    case Elem::i64: {
      out = Tensor::empty(t.size, DType::i32);
      int32_t* p = out.data<int32_t>();
      for (int64_t k = 0; k < numel; ++k) {
        int64_t x;
        std::memcpy(&x, src_bytes + 8 * k, 8);
        COCA_CHECK(x >= std::numeric_limits<int32_t>::min() && x <= std::numeric_limits<int32_t>::max(), where,
                   "int64 value ", x, " does not fit int32");
        p[k] = static_cast<int32_t>(x);
      }
      break;
    }
  }
  return out;
}

std::string describe(const PickleValue& v) {
  if (v.kind == PickleValue::Opaque) return str_cat("an object made by ", v.s, " (which is never called)");
  return str_cat("a ", pickle_kind_name(v.kind));
}

}  // namespace

bool is_zip_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char m[4] = {0, 0, 0, 0};
  in.read(m, 4);
  return in.gcount() == 4 && std::memcmp(m, "PK\x03\x04", 4) == 0;
}

NamedTensors load_torch_state_dict(const std::string& path, const StateDictCheck& check) {
  ZipReader zip(path);
  const std::string fail = zip.fail();
  // The archive's folder is whatever torch.save named it (the file's stem, or "archive").
  std::string prefix;
  for (const ZipEntry& e : zip.entries()) {
    const std::string suffix = "/data.pkl";
    if (e.name.size() > suffix.size() && e.name.ends_with(suffix) &&
        e.name.find('/') == e.name.size() - suffix.size()) {
      prefix = e.name.substr(0, e.name.size() - suffix.size());
      break;
    }
  }
  if (prefix.empty()) {
    for (const ZipEntry& e : zip.entries())
      COCA_CHECK(!e.name.ends_with("/constants.pkl"), fail,
                 "a TorchScript archive (torch.jit.save), not a checkpoint; save model.state_dict() with torch.save");
    throw Error(str_cat(fail, "no <archive>/data.pkl entry: not a checkpoint written by torch.save"));
  }
  if (const ZipEntry* b = zip.find(prefix + "/byteorder")) {
    COCA_CHECK(b->usize <= 16, fail, "entry ", b->name, " is ", b->usize, " bytes (\"little\" or \"big\" expected)");
    std::vector<char> order = zip.read(*b);
    COCA_CHECK(std::string(order.begin(), order.end()) == "little", fail, "byte order '",
               std::string(order.begin(), order.end()), "' is not supported (only little-endian)");
  }
  const ZipEntry& pkl_entry = *zip.find(prefix + "/data.pkl");
  COCA_CHECK(pkl_entry.usize <= kMaxPickleBytes, fail, "data.pkl is ", pkl_entry.usize, " bytes, over the limit of ",
             kMaxPickleBytes, " (a state dict's pickle is a few MB at most)");
  if (check.max_bytes > 0) {
    const uint64_t budget = std::min(zip.default_budget(), pkl_entry.usize + 64 + check.max_bytes);
    if (budget < zip.budget()) zip.set_budget(budget, "data.pkl and the tensors the model holds, at 8 bytes each");
  }
  const std::vector<char> pkl = zip.read(pkl_entry);
  const PickleRef root = unpickle(pkl, fail);

  PickleRef sd = root;
  if (root->kind == PickleValue::Dict)
    for (auto& [k, v] : root->entries)
      if (k->kind == PickleValue::Str && k->s == "state_dict") sd = v;
  COCA_CHECK(sd->kind == PickleValue::Dict, fail, sd == root ? "the saved object" : "its \"state_dict\"", " is ",
             describe(*sd), ", not a dict of tensors");

  // Everything is checked before any tensor's bytes are read: entry kinds, storages (one type
  // and size per key), views inside their storages, then the caller's names and shapes, then the
  // total size against the budget.
  struct StorageInfo {
    std::string type;
    int64_t numel;
    int users;
  };
  std::map<std::string, StorageInfo> storages;
  std::set<std::string> seen;
  std::vector<std::pair<std::string, const PickleValue*>> tensors;
  std::vector<std::pair<std::string, Shape>> shapes;
  uint64_t out_bytes = 0;
  for (auto& [k, v] : sd->entries) {
    COCA_CHECK(k->kind == PickleValue::Str, fail, "state dict key is ", describe(*k), ", not a string");
    const std::string& name = k->s;
    const std::string where = str_cat(fail, "tensor '", name, "': ");
    COCA_CHECK(seen.insert(name).second, fail, "tensor '", name, "' appears twice");
    COCA_CHECK(v->kind == PickleValue::TensorRef, where, "the entry is ", describe(*v), ", not a tensor");
    const PickleValue& st = *v->storage;
    Elem elem;
    size_t esize;
    COCA_CHECK(storage_elem(st.s, elem, esize), where, "storage type ", st.s, " is not supported");
    auto [info, added] = storages.emplace(st.key, StorageInfo{st.s, st.numel, 0});
    COCA_CHECK(info->second.type == st.s && info->second.numel == st.numel, where, "storage ", st.key,
               " is declared twice, differently (", info->second.type, " x ", info->second.numel, ", then ", st.s,
               " x ", st.numel, ")");
    ++info->second.users;
    // The view must lie inside its storage: offset + sum((size-1) * stride) < numel.
    bool empty = false;
    __int128 last = v->i, count = 1;
    COCA_CHECK(v->i >= 0, where, "negative storage offset ", v->i);
    for (size_t d = 0; d < v->size.size(); ++d) {
      COCA_CHECK(v->size[d] >= 0 && v->stride[d] >= 0, where, "negative size or stride in size ", shape_str(v->size),
                 " stride ", shape_str(v->stride));
      if (v->size[d] == 0) empty = true;
      else last += static_cast<__int128>(v->size[d] - 1) * v->stride[d];
      count = std::min<__int128>(count * v->size[d], __int128{1} << 62);
    }
    // Stride-0 (expanded) views may hold more elements than their storage, but not absurdly many.
    COCA_CHECK(count <= std::max<__int128>(st.numel, 1) * 1024 && count < (__int128{1} << 40), where, "size ",
               shape_str(v->size), " is implausibly large for its storage of ", st.numel, " elements");
    COCA_CHECK(empty || last < st.numel, where, "view (offset ", v->i, ", size ", shape_str(v->size), ", stride ",
               shape_str(v->stride), ") reaches past its storage of ", st.numel, " elements");
    out_bytes += static_cast<uint64_t>(empty ? 0 : count) * esize;
    tensors.emplace_back(name, v.get());
    shapes.emplace_back(name, v->size);
  }
  if (check.names_and_shapes) check.names_and_shapes(shapes);
  uint64_t storage_bytes = 0;
  for (auto& [key, info] : storages) {
    size_t esize;
    Elem elem;
    storage_elem(info.type, elem, esize);
    storage_bytes += static_cast<uint64_t>(info.numel) * esize;
  }
  const uint64_t limit = check.max_bytes > 0 ? check.max_bytes : zip.default_budget();
  COCA_CHECK(storage_bytes <= limit && out_bytes <= limit, fail, "its tensors need ", storage_bytes,
             " bytes of storage and ", out_bytes, " bytes as tensors, over the limit of ", limit, " (",
             check.max_bytes > 0 ? "8 bytes for each value the model holds, + 64 MiB" : "32 x the file's size + 64 MiB",
             ")");

  // Storages shared by several tensors are read once and dropped after their last user.
  std::map<std::string, std::vector<char>> blobs;
  NamedTensors out;
  for (auto& [name, v] : tensors) {
    const std::string where = str_cat(fail, "tensor '", name, "': ");
    const PickleValue& st = *v->storage;
    Elem elem;
    size_t esize;
    storage_elem(st.s, elem, esize);
    auto blob = blobs.find(st.key);
    if (blob == blobs.end()) {
      const ZipEntry* e = zip.find(prefix + "/data/" + st.key);
      COCA_CHECK(e, where, "storage ", prefix, "/data/", st.key, " is missing from the archive");
      COCA_CHECK(e->usize / esize == static_cast<uint64_t>(st.numel) && e->usize % esize == 0, where, "storage ",
                 st.key, " holds ", e->usize, " bytes, not ", st.numel, " elements of ", esize, " bytes");
      blob = blobs.emplace(st.key, zip.read(*e)).first;
    }
    out.emplace_back(name, materialize(*v, blob->second, elem, esize, where));
    if (--storages.at(st.key).users == 0) blobs.erase(blob);
  }
  return out;
}

}  // namespace coca
