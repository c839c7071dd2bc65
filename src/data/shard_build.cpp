#include "coca/data/shard_build.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <cmath>
#include <filesystem>
#include <regex>
#include <sstream>
#include <thread>

#include "coca/data/jpeg_decode.h"
#include "coca/data/progress.h"
#include "coca/data/shard_index.h"
#include "coca/data/text.h"

namespace fs = std::filesystem;

namespace coca {

void SkipReport::add(const std::string& reason, const std::string& key, const std::string& detail, int64_t samples) {
  counts_[reason] += samples;
  auto& ex = examples_[reason];
  if (ex.size() < kExamplesPerReason) ex.push_back({{"key", key}, {"detail", detail}});
}

void SkipReport::add_listing_issue(const InputIssue& issue) {
  add(issue.reason, issue.key, issue.detail);
  ++considered;
}

void SkipReport::merge(const SkipReport& o) {
  considered += o.considered;
  written += o.written;
  for (const auto& [r, c] : o.counts_) counts_[r] += c;
  for (const auto& [r, list] : o.examples_) {
    auto& ex = examples_[r];
    for (const auto& e : list)
      if (ex.size() < kExamplesPerReason) ex.push_back(e);
  }
}

int64_t SkipReport::skipped() const {
  int64_t n = 0;
  for (const auto& [r, c] : counts_) n += c;
  return n;
}

int64_t SkipReport::count(const std::string& reason) const {
  auto it = counts_.find(reason);
  return it == counts_.end() ? 0 : it->second;
}

nlohmann::json SkipReport::to_json() const {
  nlohmann::json j;
  j["considered"] = considered;
  j["written"] = written;
  j["skipped"] = skipped();
  j["skipped_by_reason"] = nlohmann::json(counts_);
  nlohmann::json ex = nlohmann::json::object();
  for (const auto& [r, list] : examples_) ex[r] = list;
  j["examples"] = ex;
  return j;
}

SkipReport SkipReport::from_json(const nlohmann::json& j) {
  SkipReport r;
  r.considered = j.value("considered", int64_t{0});
  r.written = j.value("written", int64_t{0});
  if (j.contains("skipped_by_reason"))
    for (const auto& [k, v] : j.at("skipped_by_reason").items()) r.counts_[k] = v.get<int64_t>();
  if (j.contains("examples"))
    for (const auto& [k, v] : j.at("examples").items())
      for (const auto& e : v) r.examples_[k].push_back(e);
  return r;
}

std::string SkipReport::summary() const {
  std::ostringstream os;
  os << "samples considered " << considered << ", written " << written << ", skipped " << skipped() << "\n";
  for (const auto& [r, c] : counts_) {
    os << "  " << r << ": " << c;
    auto it = examples_.find(r);
    if (it != examples_.end() && !it->second.empty()) {
      const auto& e = it->second.front();
      os << "  (e.g. " << e.value("key", std::string()) << ": " << e.value("detail", std::string()) << ")";
    }
    os << "\n";
  }
  return os.str();
}

Reencode parse_reencode(const std::string& name) {
  if (name == "auto") return Reencode::automatic;
  if (name == "jpeg") return Reencode::jpeg;
  if (name == "png") return Reencode::png;
  throw Error(str_cat("unknown --reencode '", name, "' (auto, jpeg, png)"));
}

const char* reencode_name(Reencode r) {
  switch (r) {
    case Reencode::automatic: return "auto";
    case Reencode::jpeg: return "jpeg";
    case Reencode::png: return "png";
  }
  return "auto";
}

namespace {

struct Decoded {
  std::vector<uint8_t> rgb;             // S*S*3, empty when the image was rejected
  std::vector<uint8_t> encoded;         // jpeg layouts: the bytes to store
  int width = 0, height = 0;            // of `encoded`
  std::vector<std::string> captions;    // validated, trimmed
  std::vector<std::string> keys;
  std::vector<std::vector<int32_t>> tokens;
  std::vector<InputIssue> issues;       // one per skipped sample
};

// jpeg layouts: what opt.reencode says (see Reencode). Whatever is stored as given has been
// decoded in full first, so damaged files are skipped here rather than met by the loader.
void encode_for_shard(const std::vector<uint8_t>& bytes, const BuildOptions& opt, Decoded& d) {
  const int max_side = opt.layout.image_size;
  const ImageFormat fmt = sniff_image_format(bytes.data(), bytes.size());
  if (fmt == ImageFormat::jpeg && opt.reencode != Reencode::png) {
    const JpegInfo info = jpeg_info(bytes.data(), bytes.size());
    if (!info.cmyk && std::max(info.width, info.height) <= max_side) {
      const Image check = decode_jpeg_scaled(bytes.data(), bytes.size());  // throws on damaged data
      d.encoded = bytes;
      d.width = check.width;
      d.height = check.height;
      return;
    }
  }
  Image img = decode_image(bytes);
  const int longer = std::max(img.width, img.height);
  const bool png_or_webp = fmt == ImageFormat::png || fmt == ImageFormat::webp;
  if (opt.reencode == Reencode::automatic && png_or_webp && longer <= max_side) {
    d.encoded = bytes;
    d.width = img.width;
    d.height = img.height;
    return;
  }
  if (longer > max_side) {
    const double f = static_cast<double>(max_side) / longer;
    Image small;
    small.width = std::max(1, static_cast<int>(std::lround(img.width * f)));
    small.height = std::max(1, static_cast<int>(std::lround(img.height * f)));
    small.rgb.resize(static_cast<size_t>(small.width) * small.height * 3);
    const RgbView v{img.rgb.data(), img.width, img.height, static_cast<int64_t>(img.width) * 3};
    resample_rgb_u8(v, {0, 0, static_cast<double>(img.width), static_cast<double>(img.height)}, small.width,
                    small.height, opt.filter, small.rgb.data());
    img = std::move(small);
  }
  const bool as_png = opt.reencode == Reencode::png ||
                      (opt.reencode == Reencode::automatic && png_or_webp &&
                       png_webp_header(bytes.data(), bytes.size()).lossless);
  d.encoded = as_png ? encode_png(img.rgb.data(), img.width, img.height, 3)
                     : encode_jpeg(img.rgb.data(), img.width, img.height, 3, opt.jpeg_quality);
  d.width = img.width;
  d.height = img.height;
}

Decoded process_item(const WorkItem& item, const BuildOptions& opt) {
  Decoded d;
  for (size_t c = 0; c < item.captions.size(); ++c) {
    const std::string key = item.caption_keys.empty() ? item.key : item.caption_keys[c];
    const std::string& raw = item.captions[c];
    if (!text::valid_utf8(raw)) {
      d.issues.push_back({"invalid_utf8_caption", key, "caption is not valid UTF-8"});
      continue;
    }
    std::string cap = text::trim(raw);
    if (cap.empty()) {
      d.issues.push_back({"empty_caption", key, "caption is empty or whitespace"});
      continue;
    }
    d.captions.push_back(std::move(cap));
    d.keys.push_back(key);
  }
  if (d.captions.empty()) return d;
  auto reject_all = [&](const std::string& reason, const std::string& detail) {
    for (const auto& k : d.keys) d.issues.push_back({reason, k, detail});
    d.captions.clear();
    d.keys.clear();
  };
  std::vector<uint8_t> bytes;
  std::string reason, detail;
  if (!read_image_bytes(item.image, bytes, reason, detail)) {
    reject_all(reason, detail);
    return d;
  }
  try {
    if (opt.layout.image_format == ShardImageFormat::jpeg) {
      encode_for_shard(bytes, opt, d);
    } else {
      const Image img = decode_image(bytes);
      d.rgb = resize_shorter_center_crop(img, opt.layout.image_size, opt.filter).rgb;
    }
  } catch (const ImageDecodeError& e) {
    reject_all(image_fault_name(e.fault()), e.what());
    return d;
  }
  if (opt.tokenizer)
    for (const auto& cap : d.captions) d.tokens.push_back(opt.tokenizer->encode_row(cap, opt.layout.context_length));
  return d;
}

// Rolls shard files as they fill; removes unpublished temporaries if destroyed early.
class ShardSetWriter {
 public:
  explicit ShardSetWriter(const BuildOptions& opt) : opt_(opt) {}
  ~ShardSetWriter() {
    if (done_) return;
    current_.reset();
    std::error_code ec;
    for (const auto& p : out_.temp_paths) fs::remove(p, ec);
    if (!current_path_.empty()) fs::remove(current_path_, ec);
  }
  void add(const Decoded& d, const std::string& caption, const std::string& key, const int32_t* tokens,
           int32_t label) {
    if (!current_) {
      const std::string prefix = opt_.temp_prefix.empty() ? str_cat(".tmp-r", opt_.rank, "-") : opt_.temp_prefix;
      current_path_ =
          (fs::path(opt_.out_dir) / str_cat(prefix, shard_file_name(static_cast<int64_t>(out_.counts.size())))).string();
      current_ = std::make_unique<ShardWriter>(current_path_, opt_.layout);
    }
    if (opt_.layout.image_format == ShardImageFormat::jpeg)
      current_->add_encoded(d.encoded.data(), d.encoded.size(), d.width, d.height, caption, key, tokens, label);
    else
      current_->add(d.rgb.data(), caption, key, tokens, label);
    if (current_->size() >= opt_.samples_per_shard) close_current();
  }
  LocalShards finish() {
    close_current();
    done_ = true;
    return out_;
  }

 private:
  void close_current() {
    if (!current_) return;
    current_->close();
    out_.temp_paths.push_back(current_path_);
    out_.counts.push_back(current_->size());
    current_.reset();
    current_path_.clear();
  }
  const BuildOptions& opt_;
  std::unique_ptr<ShardWriter> current_;
  std::string current_path_;
  LocalShards out_;
  bool done_ = false;
};

}  // namespace

struct ShardBuilder::Impl {
  explicit Impl(const BuildOptions& o) : opt(o), writer(opt) {}
  BuildOptions opt;
  ShardSetWriter writer;
  std::vector<Decoded> results;
};

ShardBuilder::ShardBuilder(const BuildOptions& opt) {
  COCA_CHECK(opt.samples_per_shard > 0, "samples per shard must be positive");
  COCA_CHECK(!opt.tokenizer || opt.layout.context_length > 0, "a tokenizer needs a context length > 0");
  fs::create_directories(opt.out_dir);
  impl_ = std::make_unique<Impl>(opt);
}

ShardBuilder::~ShardBuilder() = default;

void ShardBuilder::add(const std::vector<WorkItem>& items, SkipReport& report) {
  const BuildOptions& opt = impl_->opt;
  const int threads = std::max(1, opt.threads);
  auto& results = impl_->results;
  results.assign(items.size(), Decoded());
  std::atomic<size_t> next{0};
  std::exception_ptr failure;
  std::mutex failure_mu;
  auto work = [&] {
    try {
      for (size_t i; (i = next.fetch_add(1)) < items.size();) results[i] = process_item(items[i], opt);
    } catch (...) {
      std::lock_guard<std::mutex> g(failure_mu);
      if (!failure) failure = std::current_exception();
      next = items.size();
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads && static_cast<size_t>(t) < items.size(); ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (failure) std::rethrow_exception(failure);
  for (size_t i = 0; i < items.size(); ++i) {
    Decoded& d = results[i];
    report.considered += static_cast<int64_t>(items[i].captions.size());
    for (const auto& issue : d.issues) report.add(issue.reason, issue.key, issue.detail);
    for (size_t c = 0; c < d.captions.size(); ++c) {
      impl_->writer.add(d, d.captions[c], d.keys[c], d.tokens.empty() ? nullptr : d.tokens[c].data(), items[i].label);
      ++report.written;
    }
  }
  results.clear();
}

LocalShards ShardBuilder::finish() { return impl_->writer.finish(); }

size_t ShardBuilder::block_items() const { return static_cast<size_t>(64 * std::max(1, impl_->opt.threads)); }

LocalShards build_shards(const std::vector<WorkItem>& items, const BuildOptions& opt, SkipReport& report) {
  ShardBuilder builder(opt);
  const size_t block = builder.block_items();
  Progress progress(opt.rank == 0 ? "coca-shard (rank 0)" : str_cat("coca-shard (rank ", opt.rank, ")"),
                    static_cast<int64_t>(items.size()), opt.progress, "images");
  std::vector<WorkItem> part;
  for (size_t begin = 0; begin < items.size(); begin += block) {
    const size_t end = std::min(items.size(), begin + block);
    part.assign(items.begin() + static_cast<std::ptrdiff_t>(begin), items.begin() + static_cast<std::ptrdiff_t>(end));
    builder.add(part, report);
    progress.update(static_cast<int64_t>(end));
  }
  progress.finish();
  return builder.finish();
}

void publish_shard_files(const std::vector<std::string>& temp_paths, const std::vector<std::string>& final_paths) {
  COCA_CHECK(temp_paths.size() == final_paths.size(), "publish: ", temp_paths.size(), " files for ",
             final_paths.size(), " names");
  for (size_t i = 0; i < temp_paths.size(); ++i) {
    std::error_code ec;
    fs::rename(temp_paths[i], final_paths[i], ec);
    COCA_CHECK(!ec, "renaming ", temp_paths[i], " to ", final_paths[i], ": ", ec.message());
  }
}

namespace {
bool is_previous_output(const std::string& name) {
  static const std::regex shard(R"(shard-\d{5,}(-\d{3,})?\.h5)"), temp(R"(\.tmp-[rp]\d+-shard-\d{5,}\.h5)");
  return std::regex_match(name, shard) || std::regex_match(name, temp) || name == "index.json" ||
         name == "report.json" || name == "index.json.tmp" || name == kConversionDirName;
}
}  // namespace

bool has_previous_output(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return false;
  for (const auto& e : fs::directory_iterator(dir))
    if (is_previous_output(e.path().filename().string())) return true;
  return false;
}

int remove_previous_output(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return 0;
  std::vector<fs::path> doomed;
  for (const auto& e : fs::directory_iterator(dir))
    if (is_previous_output(e.path().filename().string())) doomed.push_back(e.path());
  for (const auto& p : doomed) {
    fs::remove_all(p, ec);
    COCA_CHECK(!ec, "removing ", p.string(), ": ", ec.message());
  }
  return static_cast<int>(doomed.size());
}

}  // namespace coca
