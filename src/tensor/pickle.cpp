#include "pickle.h"

#include <algorithm>
#include <cstring>
#include <unordered_map>

namespace coca {

namespace {

uint64_t le(const unsigned char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}


class Unpickler {
 public:
  Unpickler(const std::vector<char>& data, std::string where) : d_(data), where_(std::move(where)) {
    COCA_CHECK(d_.size() <= kMaxPickleBytes, where_, "data.pkl is ", d_.size(), " bytes, over the limit of ",
               kMaxPickleBytes, " (a state dict's pickle is a few MB at most)");
  }

  PickleRef run() {
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
          PickleRef name = pop("STACK_GLOBAL"), module = pop("STACK_GLOBAL");
          COCA_CHECK(name->kind == PickleValue::Str && module->kind == PickleValue::Str, fail("STACK_GLOBAL"),
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
        case '}': push(make(PickleValue::Dict)); break;
        case ']': push(make(PickleValue::List)); break;
        case ')': push(make(PickleValue::Tuple)); break;
        case 't': push(tuple(pop_mark("TUPLE"))); break;
        case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
          std::vector<PickleRef> items(op - 0x84);
          for (size_t k = items.size(); k-- > 0;) items[k] = pop("TUPLEn");
          push(tuple(std::move(items)));
          break;
        }
        case 's': {  // SETITEM
          PickleRef value = pop("SETITEM"), key = pop("SETITEM");
          set_items(top("SETITEM"), {key, value});
          break;
        }
        case 'u': {  // SETITEMS
          std::vector<PickleRef> kv = pop_mark("SETITEMS");
          COCA_CHECK(kv.size() % 2 == 0, fail("SETITEMS"), "odd number of keys and values");
          set_items(top("SETITEMS"), kv);
          break;
        }
        case 'a': {  // APPEND
          PickleRef value = pop("APPEND");
          append(top("APPEND"), {value});
          break;
        }
        case 'e': {  // APPENDS
          std::vector<PickleRef> values = pop_mark("APPENDS");
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
            auto v = make(PickleValue::Opaque);
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
          auto v = make(PickleValue::Float);
          std::memcpy(&v->f, &bits, 8);
          push(v);
          break;
        }
        case 0x88: case 0x89: {  // NEWTRUE, NEWFALSE
          auto v = make(PickleValue::Bool);
          v->i = op == 0x88;
          push(v);
          break;
        }
        case 'N': push(make(PickleValue::None)); break;
        case 'X': push(string(PickleValue::Str, u(4))); break;     // BINUNICODE
        case 0x8c: push(string(PickleValue::Str, u(1))); break;    // SHORT_BINUNICODE
        case 0x8d: push(string(PickleValue::Str, u(8))); break;    // BINUNICODE8
        case 'T': push(string(PickleValue::Str, u(4))); break;     // BINSTRING (protocol 2 writes str as unicode)
        case 'U': push(string(PickleValue::Str, u(1))); break;     // SHORT_BINSTRING
        case 'B': push(string(PickleValue::Bytes, u(4))); break;   // BINBYTES
        case 'C': push(string(PickleValue::Bytes, u(1))); break;   // SHORT_BINBYTES
        case '0': pop("POP"); break;
        case 'R': {  // REDUCE
          PickleRef args = pop("REDUCE"), callable = pop("REDUCE");
          COCA_CHECK(args->kind == PickleValue::Tuple, fail("REDUCE"), "arguments are a ", pickle_kind_name(args->kind),
                     ", not a tuple");
          push(reduce(callable, args->items));
          break;
        }
        case 0x81: {  // NEWOBJ
          PickleRef args = pop("NEWOBJ"), cls = pop("NEWOBJ");
          COCA_CHECK(args->kind == PickleValue::Tuple, fail("NEWOBJ"), "arguments are not a tuple");
          if (cls->kind == PickleValue::Global && cls->s == "collections.OrderedDict" && args->items.empty()) {
            push(make(PickleValue::Dict));
          } else {
            auto v = make(PickleValue::Opaque);
            v->s = cls->kind == PickleValue::Global ? cls->s : std::string("an unknown class");
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
  std::string fail(const char* op) const {
    return str_cat(where_, "corrupt pickle: ", op, " at offset ", op_at_, ": ");
  }

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

  // Every value is made here, so that their number is bounded.
  PickleRef make(PickleValue::Kind kind) {
    COCA_CHECK(++made_ <= kMaxPickleValues, where_, "pickle makes more than ", kMaxPickleValues,
               " values (limit) at offset ", op_at_);
    return std::make_shared<PickleValue>(kind);
  }
  void push(PickleRef v) { stack_.push_back(std::move(v)); }
  PickleRef pop(const char* op) {
    COCA_CHECK(stack_.size() > (marks_.empty() ? 0 : marks_.back()), fail(op), "the stack is empty");
    PickleRef v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  PickleRef top(const char* op) {
    COCA_CHECK(stack_.size() > (marks_.empty() ? 0 : marks_.back()), fail(op), "the stack is empty");
    return stack_.back();
  }
  std::vector<PickleRef> pop_mark(const char* op) {
    COCA_CHECK(!marks_.empty(), fail(op), "no MARK");
    std::vector<PickleRef> items(stack_.begin() + static_cast<std::ptrdiff_t>(marks_.back()), stack_.end());
    stack_.resize(marks_.back());
    marks_.pop_back();
    return items;
  }
  PickleRef get(uint64_t k) {
    auto it = memo_.find(k);
    COCA_CHECK(it != memo_.end(), where_, "corrupt pickle: memo entry ", k, " read at offset ", op_at_,
               " was never stored");
    return it->second;
  }

  // `child` goes into `container`; `container` must not already be inside another value (its
  // parents' depths would go stale, and a value could come to contain itself).
  void adopt(PickleValue& container, const PickleRef& child, const char* op) {
    COCA_CHECK(!container.has_parent, fail(op), "changes a ", pickle_kind_name(container.kind),
               " that is already inside another value (torch.save never does this)");
    COCA_CHECK(child.get() != &container, fail(op), "puts a ", pickle_kind_name(container.kind), " inside itself");
    container.depth = std::max(container.depth, child->depth + 1);
    COCA_CHECK(container.depth <= kMaxPickleDepth, where_, "pickle nests deeper than ", kMaxPickleDepth,
               " (limit) at offset ", op_at_);
    child->has_parent = true;
  }
  PickleRef tuple(std::vector<PickleRef> items) {
    auto v = make(PickleValue::Tuple);
    for (const PickleRef& x : items) adopt(*v, x, "TUPLE");
    v->items = std::move(items);
    return v;
  }
  PickleRef integer(int64_t x) {
    auto v = make(PickleValue::Int);
    v->i = x;
    return v;
  }
  PickleRef string(PickleValue::Kind kind, uint64_t n) {
    auto v = make(kind);
    const unsigned char* p = take(n);
    v->s.assign(reinterpret_cast<const char*>(p), n);
    return v;
  }
  PickleRef global(const std::string& module, const std::string& name) {
    auto v = make(PickleValue::Global);
    v->s = module + "." + name;
    return v;
  }
  void set_items(const PickleRef& target, const std::vector<PickleRef>& kv) {
    if (target->kind == PickleValue::Opaque) return;  // a dict subclass we do not model: its items are unused
    COCA_CHECK(target->kind == PickleValue::Dict, where_, "corrupt pickle: SETITEM(S) at offset ", op_at_, " on a ",
               pickle_kind_name(target->kind));
    for (size_t k = 0; k < kv.size(); k += 2) {
      adopt(*target, kv[k], "SETITEM(S)");
      adopt(*target, kv[k + 1], "SETITEM(S)");
      target->entries.emplace_back(kv[k], kv[k + 1]);
    }
  }
  void append(const PickleRef& target, const std::vector<PickleRef>& values) {
    if (target->kind == PickleValue::Opaque) return;
    COCA_CHECK(target->kind == PickleValue::List, where_, "corrupt pickle: APPEND(S) at offset ", op_at_, " on a ",
               pickle_kind_name(target->kind));
    for (const PickleRef& x : values) adopt(*target, x, "APPEND(S)");
    target->items.insert(target->items.end(), values.begin(), values.end());
  }

  static bool is_int_tuple(const PickleRef& v) {
    if (v->kind != PickleValue::Tuple) return false;
    for (const PickleRef& x : v->items)
      if (x->kind != PickleValue::Int) return false;
    return true;
  }

  PickleRef reduce(const PickleRef& callable, const std::vector<PickleRef>& args) {
    const std::string name = callable->kind == PickleValue::Global ? callable->s : std::string();
    if (name == "collections.OrderedDict" && args.empty()) return make(PickleValue::Dict);
    if (name == "torch._utils._rebuild_tensor_v2") {
      COCA_CHECK(args.size() >= 4 && args[0]->kind == PickleValue::Storage && args[1]->kind == PickleValue::Int &&
                     is_int_tuple(args[2]) && is_int_tuple(args[3]) && args[2]->items.size() == args[3]->items.size(),
                 fail("REDUCE"), "_rebuild_tensor_v2 expects (storage, offset, size, stride, ...)");
      auto t = make(PickleValue::TensorRef);
      t->storage = args[0];
      t->i = args[1]->i;
      for (const PickleRef& x : args[2]->items) t->size.push_back(x->i);
      for (const PickleRef& x : args[3]->items) t->stride.push_back(x->i);
      return t;
    }
    if ((name == "torch._utils._rebuild_parameter" || name == "torch._utils._rebuild_parameter_with_state") &&
        !args.empty() && args[0]->kind == PickleValue::TensorRef)
      return args[0];
    // Anything else is never called: it becomes an opaque value that only an error can use.
    auto v = make(PickleValue::Opaque);
    v->s = name.empty() ? std::string("an unknown callable") : name;
    return v;
  }

  PickleRef persistent(const PickleRef& pid) {
    COCA_CHECK(pid->kind == PickleValue::Tuple && pid->items.size() >= 5 && pid->items[0]->kind == PickleValue::Str &&
                   pid->items[0]->s == "storage",
               fail("BINPERSID"), "persistent id is not a ('storage', type, key, location, numel) tuple");
    const auto& it = pid->items;
    COCA_CHECK(it[1]->kind == PickleValue::Global && it[2]->kind == PickleValue::Str &&
                   it[4]->kind == PickleValue::Int &&
                   it[4]->i >= 0,
               fail("BINPERSID"), "storage id has a wrong type, key or element count");
    auto v = make(PickleValue::Storage);
    v->s = it[1]->s;
    v->key = it[2]->s;
    v->numel = it[4]->i;
    return v;
  }

  const std::vector<char>& d_;
  std::string where_;
  size_t pos_ = 0, op_at_ = 0;
  std::vector<PickleRef> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, PickleRef> memo_;
  size_t made_ = 0;
};

}  // namespace

void PickleValue::release_children(std::vector<PickleRef>& out) {
  for (PickleRef& x : items) out.push_back(std::move(x));
  for (auto& [k, v] : entries) {
    out.push_back(std::move(k));
    out.push_back(std::move(v));
  }
  if (storage) out.push_back(std::move(storage));
  items.clear();
  entries.clear();
}

PickleValue::~PickleValue() {
  std::vector<PickleRef> pending;
  release_children(pending);
  while (!pending.empty()) {
    PickleRef v = std::move(pending.back());
    pending.pop_back();
    // The last reference: take its children before it goes, so that its destructor finds none.
    if (v && v.use_count() == 1) v->release_children(pending);
  }
}

PickleRef unpickle(const std::vector<char>& data, const std::string& where) { return Unpickler(data, where).run(); }

}  // namespace coca
