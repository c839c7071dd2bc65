#include "coca/tensor/torch_archive.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <unordered_map>

namespace coca {

namespace {

uint64_t le(const unsigned char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// ---- zip ------------------------------------------------------------------------------------

struct ZipEntry {
  std::string name;
  uint16_t flags = 0, method = 0;
  uint32_t crc = 0;
  uint64_t csize = 0, usize = 0, local_offset = 0;
};

class ZipReader {
 public:
  explicit ZipReader(const std::string& path) : path_(path), in_(path, std::ios::binary) {
    COCA_CHECK(in_.good(), "torch checkpoint ", path, ": cannot open file");
    in_.seekg(0, std::ios::end);
    size_ = static_cast<uint64_t>(in_.tellg());
    read_directory();
  }

  const std::vector<ZipEntry>& entries() const { return entries_; }
  const ZipEntry* find(const std::string& name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : &entries_[it->second];
  }

  // The entry's bytes, inflated if deflated, CRC-32 checked.
  std::vector<char> read(const ZipEntry& e) {
    COCA_CHECK(!(e.flags & 1), fail(), "entry ", e.name, " is encrypted");
    unsigned char h[30];
    read_at(e.local_offset, h, 30, e.name.c_str());
    COCA_CHECK(le(h, 4) == 0x04034b50, fail(), "entry ", e.name, " has no local header at offset ", e.local_offset,
               " (corrupt archive)");
    const uint64_t data = e.local_offset + 30 + le(h + 26, 2) + le(h + 28, 2);
    COCA_CHECK(data <= size_ && e.csize <= size_ - data, fail(), "entry ", e.name, " (", e.csize,
               " bytes at offset ", data, ") runs past the end of the ", size_, "-byte file (truncated?)");
    std::vector<char> out;
    if (e.method == 0) {
      COCA_CHECK(e.csize == e.usize, fail(), "stored entry ", e.name, " has compressed size ", e.csize,
                 " != size ", e.usize);
      out.resize(e.usize);
      read_at(data, out.data(), out.size(), e.name.c_str());
    } else if (e.method == 8) {
      // Deflate cannot expand data by more than about 1032:1; a larger claim is corruption.
      COCA_CHECK(e.usize / 1032 <= e.csize + 1, fail(), "deflated entry ", e.name, " claims ", e.usize,
                 " bytes from ", e.csize);
      std::vector<char> packed(e.csize);
      read_at(data, packed.data(), packed.size(), e.name.c_str());
      out.resize(e.usize);
      inflate_raw(packed, out, e.name);
    } else {
      throw Error(str_cat(fail(), "entry ", e.name, " uses zip compression method ", e.method,
                          "; only stored (0) and deflate (8) are supported"));
    }
    uLong crc = crc32(0L, Z_NULL, 0);
    for (size_t pos = 0; pos < out.size();) {
      const size_t n = std::min<size_t>(out.size() - pos, 1u << 30);
      crc = crc32(crc, reinterpret_cast<const Bytef*>(out.data() + pos), static_cast<uInt>(n));
      pos += n;
    }
    COCA_CHECK(static_cast<uint32_t>(crc) == e.crc, fail(), "entry ", e.name, " fails its CRC-32 check (corrupt)");
    return out;
  }

  std::string fail() const { return str_cat("torch checkpoint ", path_, ": "); }

 private:
  void read_at(uint64_t offset, void* dst, size_t n, const char* what) {
    COCA_CHECK(offset <= size_ && n <= size_ - offset, fail(), what, ": ", n, " bytes at offset ", offset,
               " lie past the end of the ", size_, "-byte file (truncated?)");
    in_.clear();
    in_.seekg(static_cast<std::streamoff>(offset));
    in_.read(static_cast<char*>(dst), static_cast<std::streamsize>(n));
    COCA_CHECK(in_.good(), fail(), "read error at offset ", offset, " (", what, ")");
  }

  void inflate_raw(const std::vector<char>& packed, std::vector<char>& out, const std::string& name) {
    z_stream z{};
    COCA_CHECK(inflateInit2(&z, -MAX_WBITS) == Z_OK, fail(), "zlib inflateInit2 failed for ", name);
    size_t in_pos = 0, out_pos = 0;
    int rc = Z_OK;
    while (rc == Z_OK) {
      const size_t in_n = std::min<size_t>(packed.size() - in_pos, 1u << 30);
      const size_t out_n = std::min<size_t>(out.size() - out_pos, 1u << 30);
      z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(packed.data() + in_pos));
      z.avail_in = static_cast<uInt>(in_n);
      z.next_out = reinterpret_cast<Bytef*>(out.data() + out_pos);
      z.avail_out = static_cast<uInt>(out_n);
      rc = inflate(&z, Z_NO_FLUSH);
      in_pos += in_n - z.avail_in;
      out_pos += out_n - z.avail_out;
      if (rc == Z_BUF_ERROR && (in_pos < packed.size() && out_pos < out.size())) rc = Z_OK;  // chunk boundary
    }
    inflateEnd(&z);
    COCA_CHECK(rc == Z_STREAM_END && out_pos == out.size(), fail(), "deflated entry ", name,
               " does not inflate to its ", out.size(), " bytes (zlib code ", rc, ", got ", out_pos, ")");
  }

  void read_directory() {
    // End of central directory: 22 bytes plus a comment of at most 65535, at the end of the file.
    const uint64_t tail = std::min<uint64_t>(size_, 22 + 65535);
    std::vector<unsigned char> t(tail);
    read_at(size_ - tail, t.data(), tail, "end of central directory");
    int64_t at = -1;
    for (int64_t i = static_cast<int64_t>(tail) - 22; i >= 0; --i)
      if (le(&t[i], 4) == 0x06054b50 && i + 22 + static_cast<int64_t>(le(&t[i + 20], 2)) <= static_cast<int64_t>(tail)) {
        at = i;
        break;
      }
    COCA_CHECK(at >= 0, fail(), "no zip end-of-central-directory record (truncated, or not a zip archive)");
    const unsigned char* e = &t[at];
    const uint64_t eocd_pos = size_ - tail + at;
    uint64_t count = le(e + 10, 2), cd_size = le(e + 12, 4), cd_offset = le(e + 16, 4);
    COCA_CHECK(le(e + 4, 2) == 0 && le(e + 6, 2) == 0, fail(), "multi-disk zip archives are not supported");
    if (eocd_pos >= 20) {
      unsigned char loc[20];
      read_at(eocd_pos - 20, loc, 20, "zip64 locator");
      if (le(loc, 4) == 0x07064b50) {
        unsigned char z[56];
        const uint64_t z_pos = le(loc + 8, 8);
        read_at(z_pos, z, 56, "zip64 end of central directory");
        COCA_CHECK(le(z, 4) == 0x06064b50, fail(), "zip64 locator points at offset ", z_pos,
                   ", which holds no zip64 end-of-central-directory record");
        count = le(z + 32, 8);
        cd_size = le(z + 40, 8);
        cd_offset = le(z + 48, 8);
      }
    }
    COCA_CHECK(cd_offset <= eocd_pos && cd_size <= eocd_pos - cd_offset, fail(), "central directory (",
               cd_size, " bytes at offset ", cd_offset, ") lies outside the file (corrupt or truncated)");
    std::vector<unsigned char> cd(cd_size);
    read_at(cd_offset, cd.data(), cd.size(), "central directory");
    size_t p = 0;
    for (uint64_t i = 0; i < count; ++i) {
      COCA_CHECK(p + 46 <= cd.size() && le(&cd[p], 4) == 0x02014b50, fail(), "central directory entry ", i,
                 " is corrupt");
      const unsigned char* h = &cd[p];
      const size_t nlen = le(h + 28, 2), xlen = le(h + 30, 2), clen = le(h + 32, 2);
      COCA_CHECK(p + 46 + nlen + xlen + clen <= cd.size(), fail(), "central directory entry ", i,
                 " runs past the directory");
      ZipEntry z;
      z.flags = static_cast<uint16_t>(le(h + 8, 2));
      z.method = static_cast<uint16_t>(le(h + 10, 2));
      z.crc = static_cast<uint32_t>(le(h + 16, 4));
      z.csize = le(h + 20, 4);
      z.usize = le(h + 24, 4);
      z.local_offset = le(h + 42, 4);
      z.name.assign(reinterpret_cast<const char*>(h + 46), nlen);
      // Fields saturated at 0xffffffff continue, in order, in the zip64 extra field (id 1).
      const bool need_u = z.usize == 0xffffffffu, need_c = z.csize == 0xffffffffu,
                 need_o = z.local_offset == 0xffffffffu;
      if (need_u || need_c || need_o) {
        bool found = false;
        for (size_t x = 0; x + 4 <= xlen;) {
          const unsigned char* f = h + 46 + nlen + x;
          const size_t id = le(f, 2), len = le(f + 2, 2);
          COCA_CHECK(x + 4 + len <= xlen, fail(), "entry ", z.name, " has a corrupt extra field");
          if (id == 1) {
            size_t q = 0;
            auto take = [&](uint64_t& v) {
              COCA_CHECK(q + 8 <= len, fail(), "entry ", z.name, " has a short zip64 extra field");
              v = le(f + 4 + q, 8);
              q += 8;
            };
            if (need_u) take(z.usize);
            if (need_c) take(z.csize);
            if (need_o) take(z.local_offset);
            found = true;
            break;
          }
          x += 4 + len;
        }
        COCA_CHECK(found, fail(), "entry ", z.name, " needs a zip64 extra field and has none");
      }
      by_name_[z.name] = entries_.size();
      entries_.push_back(std::move(z));
      p += 46 + nlen + xlen + clen;
    }
  }

  std::string path_;
  std::ifstream in_;
  uint64_t size_ = 0;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string, size_t> by_name_;
};

// ---- pickle ---------------------------------------------------------------------------------

struct Value;
using V = std::shared_ptr<Value>;

struct Value {
  enum Kind { None, Bool, Int, Float, Str, Bytes, Tuple, List, Dict, Global, Storage, TensorRef, Opaque };
  Kind kind;
  int64_t i = 0;
  double f = 0;
  std::string s;  // Str, Bytes; Global: "module.name"; Opaque: what made it; Storage: the type's global
  std::vector<V> items;                  // Tuple, List
  std::vector<std::pair<V, V>> entries;  // Dict, in insertion order
  int depth = 1;                         // nesting, bounded so that destruction cannot overflow the stack
  // Storage: blob key and element count. TensorRef: its storage, offset, sizes and strides.
  std::string key;
  int64_t numel = 0;
  V storage;
  Shape size, stride;

  explicit Value(Kind k) : kind(k) {}
};

const char* kind_name(Value::Kind k) {
  static const char* names[] = {"None", "bool", "int", "float", "str", "bytes", "tuple",
                                "list", "dict", "global", "storage", "tensor", "object"};
  return names[k];
}

constexpr int kMaxDepth = 1000;

class Unpickler {
 public:
  Unpickler(const std::vector<char>& data, std::string where) : d_(data), where_(std::move(where)) {}

  V run() {
    while (true) {
      COCA_CHECK(pos_ < d_.size(), where_, "pickle ends at offset ", pos_, " without STOP (truncated?)");
      op_at_ = pos_;
      const unsigned char op = static_cast<unsigned char>(d_[pos_++]);
      switch (op) {
        case 0x80: take(1); break;  // PROTO
        case 0x95: take(8); break;  // FRAME: a length hint only
        case '.': {                 // STOP
          COCA_CHECK(stack_.size() == 1 && marks_.empty(), fail("STOP"), "leaves ", stack_.size(),
                     " values on the stack");
          return stack_.back();
        }
        case 'c': {  // GLOBAL
          std::string module = line(), name = line();
          push(global(module, name));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          V name = pop("STACK_GLOBAL"), module = pop("STACK_GLOBAL");
          COCA_CHECK(name->kind == Value::Str && module->kind == Value::Str, fail("STACK_GLOBAL"),
                     "module and name must be strings");
          push(global(module->s, name->s));
          break;
        }
        case 'q': memo_[u(1)] = top("BINPUT"); break;
        case 'r': memo_[u(4)] = top("LONG_BINPUT"); break;
        case 0x94: memo_[static_cast<uint64_t>(memo_.size())] = top("MEMOIZE"); break;
        case 'h': push(get(u(1))); break;
        case 'j': push(get(u(4))); break;
        case '(': marks_.push_back(stack_.size()); break;
        case '}': push(std::make_shared<Value>(Value::Dict)); break;
        case ']': push(std::make_shared<Value>(Value::List)); break;
        case ')': push(std::make_shared<Value>(Value::Tuple)); break;
        case 't': push(tuple(pop_mark("TUPLE"))); break;
        case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
          std::vector<V> items(op - 0x84);
          for (size_t k = items.size(); k-- > 0;) items[k] = pop("TUPLEn");
          push(tuple(std::move(items)));
          break;
        }
        case 's': {  // SETITEM
          V value = pop("SETITEM"), key = pop("SETITEM");
          set_items(top("SETITEM"), {key, value});
          break;
        }
        case 'u': {  // SETITEMS
          std::vector<V> kv = pop_mark("SETITEMS");
          COCA_CHECK(kv.size() % 2 == 0, fail("SETITEMS"), "odd number of keys and values");
          set_items(top("SETITEMS"), kv);
          break;
        }
        case 'a': {  // APPEND
          V value = pop("APPEND");
          append(top("APPEND"), {value});
          break;
        }
        case 'e': {  // APPENDS
          std::vector<V> values = pop_mark("APPENDS");
          append(top("APPENDS"), values);
          break;
        }
        case 'J': push(integer(static_cast<int32_t>(u(4)))); break;  // BININT
        case 'K': push(integer(static_cast<int64_t>(u(1)))); break;  // BININT1
        case 'M': push(integer(static_cast<int64_t>(u(2)))); break;  // BININT2
        case 0x8a: {                                                 // LONG1
          const size_t n = u(1);
          const unsigned char* b = take(n);
          if (n > 8) {  // a Python big int: kept only as an opaque value
            auto v = std::make_shared<Value>(Value::Opaque);
            v->s = "int of more than 64 bits";
            push(v);
            break;
          }
          uint64_t x = n ? le(b, static_cast<int>(n)) : 0;
          if (n && n < 8 && (b[n - 1] & 0x80)) x |= ~uint64_t{0} << (8 * n);  // sign-extend
          push(integer(static_cast<int64_t>(x)));
          break;
        }
        case 'G': {  // BINFLOAT, big-endian
          const unsigned char* b = take(8);
          uint64_t bits = 0;
          for (int k = 0; k < 8; ++k) bits = (bits << 8) | b[k];
          auto v = std::make_shared<Value>(Value::Float);
          std::memcpy(&v->f, &bits, 8);
          push(v);
          break;
        }
        case 0x88: case 0x89: {  // NEWTRUE, NEWFALSE
          auto v = std::make_shared<Value>(Value::Bool);
          v->i = op == 0x88;
          push(v);
          break;
        }
        case 'N': push(std::make_shared<Value>(Value::None)); break;
        case 'X': push(string(Value::Str, u(4))); break;     // BINUNICODE
        case 0x8c: push(string(Value::Str, u(1))); break;    // SHORT_BINUNICODE
        case 0x8d: push(string(Value::Str, u(8))); break;    // BINUNICODE8
        case 'T': push(string(Value::Str, u(4))); break;     // BINSTRING (protocol 2 writes str as unicode)
        case 'U': push(string(Value::Str, u(1))); break;     // SHORT_BINSTRING
        case 'B': push(string(Value::Bytes, u(4))); break;   // BINBYTES
        case 'C': push(string(Value::Bytes, u(1))); break;   // SHORT_BINBYTES
        case '0': pop("POP"); break;
        case 'R': {  // REDUCE
          V args = pop("REDUCE"), callable = pop("REDUCE");
          COCA_CHECK(args->kind == Value::Tuple, fail("REDUCE"), "arguments are a ", kind_name(args->kind),
                     ", not a tuple");
          push(reduce(callable, args->items));
          break;
        }
        case 0x81: {  // NEWOBJ
          V args = pop("NEWOBJ"), cls = pop("NEWOBJ");
          COCA_CHECK(args->kind == Value::Tuple, fail("NEWOBJ"), "arguments are not a tuple");
          if (cls->kind == Value::Global && cls->s == "collections.OrderedDict" && args->items.empty()) {
            push(std::make_shared<Value>(Value::Dict));
          } else {
            auto v = std::make_shared<Value>(Value::Opaque);
            v->s = cls->kind == Value::Global ? cls->s : std::string("an unknown class");
            push(v);
          }
          break;
        }
        case 'b':  // BUILD: object state (a state dict's _metadata, say) is not needed
          pop("BUILD");
          top("BUILD");
          break;
        case 'Q': push(persistent(pop("BINPERSID"))); break;
        default: {
          const char c = static_cast<char>(op);
          throw Error(str_cat(where_, "unsupported pickle opcode 0x", hex(op),
                              (op >= 0x20 && op < 0x7f) ? str_cat(" ('", std::string(1, c), "')") : std::string(),
                              " at offset ", op_at_, " of data.pkl (not a state dict as torch.save writes it)"));
        }
      }
    }
  }

 private:
  static std::string hex(unsigned v) {
    const char* digits = "0123456789abcdef";
    return {digits[(v >> 4) & 15], digits[v & 15]};
  }
  std::string fail(const char* op) const { return str_cat(where_, "corrupt pickle: ", op, " at offset ", op_at_, ": "); }

  const unsigned char* take(size_t n) {
    COCA_CHECK(n <= d_.size() - pos_, where_, "corrupt pickle: opcode at offset ", op_at_, " needs ", n,
               " bytes, ", d_.size() - pos_, " are left");
    const unsigned char* p = reinterpret_cast<const unsigned char*>(d_.data() + pos_);
    pos_ += n;
    return p;
  }
  uint64_t u(int n) { return le(take(n), n); }
  std::string line() {
    const size_t start = pos_;
    while (pos_ < d_.size() && d_[pos_] != '\n') ++pos_;
    COCA_CHECK(pos_ < d_.size(), where_, "corrupt pickle: GLOBAL at offset ", op_at_, " has no newline");
    return std::string(d_.data() + start, d_.data() + pos_++);
  }

  void push(V v) { stack_.push_back(std::move(v)); }
  V pop(const char* op) {
    COCA_CHECK(stack_.size() > (marks_.empty() ? 0 : marks_.back()), fail(op), "the stack is empty");
    V v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  V top(const char* op) {
    COCA_CHECK(stack_.size() > (marks_.empty() ? 0 : marks_.back()), fail(op), "the stack is empty");
    return stack_.back();
  }
  std::vector<V> pop_mark(const char* op) {
    COCA_CHECK(!marks_.empty(), fail(op), "no MARK");
    std::vector<V> items(stack_.begin() + static_cast<std::ptrdiff_t>(marks_.back()), stack_.end());
    stack_.resize(marks_.back());
    marks_.pop_back();
    return items;
  }
  V get(uint64_t k) {
    auto it = memo_.find(k);
    COCA_CHECK(it != memo_.end(), where_, "corrupt pickle: memo entry ", k, " read at offset ", op_at_,
               " was never stored");
    return it->second;
  }

  void grow(Value& container, const V& child) {
    container.depth = std::max(container.depth, child->depth + 1);
    COCA_CHECK(container.depth <= kMaxDepth, where_, "pickle nests deeper than ", kMaxDepth, " at offset ", op_at_);
  }
  V tuple(std::vector<V> items) {
    auto v = std::make_shared<Value>(Value::Tuple);
    for (const V& x : items) grow(*v, x);
    v->items = std::move(items);
    return v;
  }
  V integer(int64_t x) {
    auto v = std::make_shared<Value>(Value::Int);
    v->i = x;
    return v;
  }
  V string(Value::Kind kind, uint64_t n) {
    auto v = std::make_shared<Value>(kind);
    const unsigned char* p = take(n);
    v->s.assign(reinterpret_cast<const char*>(p), n);
    return v;
  }
  V global(const std::string& module, const std::string& name) {
    auto v = std::make_shared<Value>(Value::Global);
    v->s = module + "." + name;
    return v;
  }
  void set_items(const V& target, const std::vector<V>& kv) {
    if (target->kind == Value::Opaque) return;  // a dict subclass we do not model: its items are unused
    COCA_CHECK(target->kind == Value::Dict, where_, "corrupt pickle: SETITEM(S) at offset ", op_at_, " on a ",
               kind_name(target->kind));
    for (size_t k = 0; k < kv.size(); k += 2) {
      grow(*target, kv[k]);
      grow(*target, kv[k + 1]);
      target->entries.emplace_back(kv[k], kv[k + 1]);
    }
  }
  void append(const V& target, const std::vector<V>& values) {
    if (target->kind == Value::Opaque) return;
    COCA_CHECK(target->kind == Value::List, where_, "corrupt pickle: APPEND(S) at offset ", op_at_, " on a ",
               kind_name(target->kind));
    for (const V& x : values) grow(*target, x);
    target->items.insert(target->items.end(), values.begin(), values.end());
  }

  static bool is_int_tuple(const V& v) {
    if (v->kind != Value::Tuple) return false;
    for (const V& x : v->items)
      if (x->kind != Value::Int) return false;
    return true;
  }

  V reduce(const V& callable, const std::vector<V>& args) {
    const std::string name = callable->kind == Value::Global ? callable->s : std::string();
    if (name == "collections.OrderedDict" && args.empty()) return std::make_shared<Value>(Value::Dict);
    if (name == "torch._utils._rebuild_tensor_v2") {
      COCA_CHECK(args.size() >= 4 && args[0]->kind == Value::Storage && args[1]->kind == Value::Int &&
                     is_int_tuple(args[2]) && is_int_tuple(args[3]) && args[2]->items.size() == args[3]->items.size(),
                 fail("REDUCE"), "_rebuild_tensor_v2 expects (storage, offset, size, stride, ...)");
      auto t = std::make_shared<Value>(Value::TensorRef);
      t->storage = args[0];
      t->i = args[1]->i;
      for (const V& x : args[2]->items) t->size.push_back(x->i);
      for (const V& x : args[3]->items) t->stride.push_back(x->i);
      return t;
    }
    if ((name == "torch._utils._rebuild_parameter" || name == "torch._utils._rebuild_parameter_with_state") &&
        !args.empty() && args[0]->kind == Value::TensorRef)
      return args[0];
    // Anything else is never called: it becomes an opaque value that only an error can use.
    auto v = std::make_shared<Value>(Value::Opaque);
    v->s = name.empty() ? std::string("an unknown callable") : name;
    return v;
  }

  V persistent(const V& pid) {
    COCA_CHECK(pid->kind == Value::Tuple && pid->items.size() >= 5 && pid->items[0]->kind == Value::Str &&
                   pid->items[0]->s == "storage",
               fail("BINPERSID"), "persistent id is not a ('storage', type, key, location, numel) tuple");
    const auto& it = pid->items;
    COCA_CHECK(it[1]->kind == Value::Global && it[2]->kind == Value::Str && it[4]->kind == Value::Int &&
                   it[4]->i >= 0,
               fail("BINPERSID"), "storage id has a wrong type, key or element count");
    auto v = std::make_shared<Value>(Value::Storage);
    v->s = it[1]->s;
    v->key = it[2]->s;
    v->numel = it[4]->i;
    return v;
  }

  const std::vector<char>& d_;
  std::string where_;
  size_t pos_ = 0, op_at_ = 0;
  std::vector<V> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, V> memo_;
};

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
Tensor materialize(const Value& t, const std::vector<char>& blob, Elem elem, size_t esize, const std::string& where) {
  const int64_t numel = shape_numel(t.size);
  std::vector<char> dense(static_cast<size_t>(numel) * esize);
  bool contiguous = true;
  for (int64_t d = static_cast<int64_t>(t.size.size()) - 1, expect = 1; d >= 0; --d) {
    if (t.size[d] != 1 && t.stride[d] != expect) contiguous = false;
    expect *= t.size[d];
  }
  if (contiguous && numel > 0) {  // the common case: one copy
    std::memcpy(dense.data(), blob.data() + static_cast<size_t>(t.i) * esize, dense.size());
  } else if (numel > 0) {
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
      const DType dt = elem == Elem::f32 ? DType::f32 : elem == Elem::f64 ? DType::f64 : elem == Elem::bf16 ? DType::bf16
                     : elem == Elem::i32 ? DType::i32 : DType::u8;
      out = Tensor::empty(t.size, dt);
      if (!dense.empty()) std::memcpy(out.raw_data(), dense.data(), dense.size());
      if (dt == DType::bf16) out = out.to(DType::f32);
      break;
    }
    case Elem::f16: {
      out = Tensor::empty(t.size, DType::f32);
      float* p = out.data<float>();
      for (int64_t k = 0; k < numel; ++k) {
        uint16_t h;
        std::memcpy(&h, dense.data() + 2 * k, 2);
        p[k] = half_to_float(h);
      }
      break;
    }
    case Elem::i64: {
      out = Tensor::empty(t.size, DType::i32);
      int32_t* p = out.data<int32_t>();
      for (int64_t k = 0; k < numel; ++k) {
        int64_t x;
        std::memcpy(&x, dense.data() + 8 * k, 8);
        COCA_CHECK(x >= std::numeric_limits<int32_t>::min() && x <= std::numeric_limits<int32_t>::max(), where,
                   "int64 value ", x, " does not fit int32");
        p[k] = static_cast<int32_t>(x);
      }
      break;
    }
  }
  return out;
}

std::string describe(const Value& v) {
  if (v.kind == Value::Opaque) return str_cat("an object made by ", v.s, " (which is never called)");
  return str_cat("a ", kind_name(v.kind));
}

}  // namespace

bool is_zip_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char m[4] = {0, 0, 0, 0};
  in.read(m, 4);
  return in.gcount() == 4 && std::memcmp(m, "PK\x03\x04", 4) == 0;
}

NamedTensors load_torch_state_dict(const std::string& path) {
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
    std::vector<char> order = zip.read(*b);
    COCA_CHECK(std::string(order.begin(), order.end()) == "little", fail, "byte order '",
               std::string(order.begin(), order.end()), "' is not supported (only little-endian)");
  }
  const std::vector<char> pkl = zip.read(*zip.find(prefix + "/data.pkl"));
  const V root = Unpickler(pkl, fail).run();

  V sd = root;
  if (root->kind == Value::Dict)
    for (auto& [k, v] : root->entries)
      if (k->kind == Value::Str && k->s == "state_dict") sd = v;
  COCA_CHECK(sd->kind == Value::Dict, fail, sd == root ? "the saved object" : "its \"state_dict\"", " is ",
             describe(*sd), ", not a dict of tensors");

  // Storages shared by several tensors are read once and dropped after their last user.
  std::map<std::string, int> users;
  for (auto& [k, v] : sd->entries)
    if (v->kind == Value::TensorRef) ++users[v->storage->key];
  std::map<std::string, std::vector<char>> blobs;
  std::set<std::string> seen;
  NamedTensors out;
  for (auto& [k, v] : sd->entries) {
    COCA_CHECK(k->kind == Value::Str, fail, "state dict key is ", describe(*k), ", not a string");
    const std::string& name = k->s;
    const std::string where = str_cat(fail, "tensor '", name, "': ");
    COCA_CHECK(seen.insert(name).second, fail, "tensor '", name, "' appears twice");
    COCA_CHECK(v->kind == Value::TensorRef, where, "the entry is ", describe(*v), ", not a tensor");
    const Value& st = *v->storage;
    Elem elem;
    size_t esize;
    COCA_CHECK(storage_elem(st.s, elem, esize), where, "storage type ", st.s, " is not supported");
    auto blob = blobs.find(st.key);
    if (blob == blobs.end()) {
      const ZipEntry* e = zip.find(prefix + "/data/" + st.key);
      COCA_CHECK(e, where, "storage ", prefix, "/data/", st.key, " is missing from the archive");
      blob = blobs.emplace(st.key, zip.read(*e)).first;
      COCA_CHECK(blob->second.size() / esize == static_cast<uint64_t>(st.numel) && blob->second.size() % esize == 0,
                 where, "storage ", st.key, " holds ", blob->second.size(), " bytes, not ", st.numel, " elements of ",
                 esize, " bytes");
    }
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
    out.emplace_back(name, materialize(*v, blob->second, elem, esize, where));
    if (--users[st.key] == 0) blobs.erase(blob);
  }
  return out;
}

}  // namespace coca
