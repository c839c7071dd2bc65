#include "coca/data/loader.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <unordered_map>

#include "coca/data/augment.h"
#include "coca/data/jpeg_decode.h"
#include "coca/data/shard.h"

namespace coca {

namespace {

nlohmann::json skips_to_json(const std::vector<SkippedShard>& skipped) {
  nlohmann::json sk = nlohmann::json::array();
  for (const auto& s : skipped) sk.push_back({s.shard, s.visit, s.chunk});
  return sk;
}

std::vector<SkippedShard> skips_from_json(const nlohmann::json& j) {
  std::vector<SkippedShard> out;
  for (const auto& s : j) out.push_back({s.at(0).get<int32_t>(), s.at(1).get<int64_t>(), s.at(2).get<int64_t>()});
  return out;
}

}  // namespace

nlohmann::json LoaderState::to_json() const {
  nlohmann::json j = {{"epoch", epoch}, {"batch", batch}, {"skipped", skips_to_json(skipped)}};
  if (!segments.empty()) {
    nlohmann::json segs = nlohmann::json::array();
    for (const auto& g : segments) {
      nlohmann::json per_rank = nlohmann::json::array();
      for (const auto& sk : g.skipped) per_rank.push_back(skips_to_json(sk));
      segs.push_back({{"world", g.world}, {"batch_size", g.batch_size}, {"batches", g.batches}, {"skipped", per_rank}});
    }
    j["segments"] = segs;
  }
  return j;
}

LoaderState LoaderState::from_json(const nlohmann::json& j) {
  LoaderState st;
  st.epoch = j.at("epoch").get<int64_t>();
  st.batch = j.at("batch").get<int64_t>();
  st.skipped = skips_from_json(j.value("skipped", nlohmann::json::array()));
  for (const auto& g : j.value("segments", nlohmann::json::array())) {
    StreamSegment seg;
    seg.world = g.at("world").get<int>();
    seg.batch_size = g.at("batch_size").get<int>();
    seg.batches = g.at("batches").get<int64_t>();
    for (const auto& sk : g.at("skipped")) seg.skipped.push_back(skips_from_json(sk));
    st.segments.push_back(std::move(seg));
  }
  return st;
}

LoaderState LoaderState::continue_elsewhere(const std::vector<LoaderState>& old_ranks, int old_batch_size) {
  COCA_CHECK(!old_ranks.empty(), "loader: no saved rank states to continue from");
  const LoaderState& first = old_ranks.front();
  for (size_t r = 1; r < old_ranks.size(); ++r)
    COCA_CHECK(old_ranks[r].epoch == first.epoch && old_ranks[r].batch == first.batch &&
                   old_ranks[r].segments.size() == first.segments.size(),
               "loader: saved rank states disagree (rank 0 at epoch ", first.epoch, " batch ", first.batch, ", rank ", r,
               " at epoch ", old_ranks[r].epoch, " batch ", old_ranks[r].batch, ")");
  LoaderState st;
  st.epoch = first.epoch;
  st.segments = first.segments;
  if (first.batch > 0) {
    StreamSegment seg;
    seg.world = static_cast<int>(old_ranks.size());
    seg.batch_size = old_batch_size;
    seg.batches = first.batch;
    for (const auto& r : old_ranks) seg.skipped.push_back(r.skipped);
    st.segments.push_back(std::move(seg));
  }
  return st;
}

struct ShardLoader::Sample {
  SampleRef ref;
  int64_t position = 0;  // emission index within the epoch: seeds this sample's augmentation
  std::vector<uint8_t> pixels;   // S*S*3 pixels (format 1) or the encoded file (format 2)
  std::vector<int32_t> tokens;
  std::string caption;           // when the workers tokenize
  int32_t label = -1;
  std::string key;
};

struct ShardLoader::RawBatch {
  int64_t step = 0;
  std::vector<Sample> samples;
  std::vector<SkippedShard> skips;
};

namespace {

uint64_t ref_key(const SampleRef& r) { return (static_cast<uint64_t>(r.shard) << 40) ^ static_cast<uint64_t>(r.row); }

std::vector<int64_t> offsets_of(const ShardIndex& index) {
  std::vector<int64_t> off(index.shards.size() + 1, 0);
  for (size_t i = 0; i < index.shards.size(); ++i) off[i + 1] = off[i] + index.shards[i].samples;
  return off;
}

}  // namespace

namespace detail {

// Reads rows [start, start+count) of one shard into samples (pixels or encoded bytes,
// tokens, labels, keys, captions when `want_captions`). Format 2: one read of the rows'
// bytes, and every image's header is checked against its recorded size, so that a damaged
// image fails the read (and --skip-bad-shards skips its shard) rather than a worker later.
class ChunkSource {
 public:
  ChunkSource(const ShardIndex& index, const std::string& dir, bool want_captions = false)
      : index_(index), dir_(dir), want_captions_(want_captions) {}
  template <typename Sink>
  void read(int32_t shard, int64_t start, int64_t count, Sink&& sink) {
    if (open_shard_ != shard) {
      reader_.reset();
      open_shard_ = -1;
      reader_ = std::make_unique<ShardReader>(index_.shard_path(dir_, static_cast<size_t>(shard)));
      open_shard_ = shard;
      COCA_CHECK(reader_->size() == index_.shards[static_cast<size_t>(shard)].samples, "shard ", reader_->path(),
                 " has ", reader_->size(), " samples but index.json says ",
                 index_.shards[static_cast<size_t>(shard)].samples);
      COCA_CHECK(reader_->format_version() == index_.format_version, "shard ", reader_->path(), " is format ",
                 reader_->format_version(), " (", reader_->encoded() ? "jpeg" : "raw", ") but index.json says ",
                 index_.format_version, " (", index_.image_format,
                 "): a shard set cannot mix image formats; re-shard it with one --image-format");
      COCA_CHECK(reader_->image_size() == index_.image_size, "shard ", reader_->path(), " has ",
                 reader_->image_size(), "px images but index.json says ", index_.image_size);
      reader_->set_vocab_size(index_.vocab_size());  // token ids outside the vocabulary name the shard
    }
    const bool encoded = reader_->encoded();
    const size_t img = static_cast<size_t>(index_.image_size) * index_.image_size * 3;
    if (encoded) {
      reader_->read_encoded(start, count, pixels_);
      check_headers(start, count);
    } else {
      pixels_.resize(img * static_cast<size_t>(count));
      reader_->read_images(start, count, pixels_.data());
    }
    const int L = reader_->context_length();
    tokens_.resize(static_cast<size_t>(L) * static_cast<size_t>(count));
    if (L > 0) reader_->read_tokens(start, count, tokens_.data());
    labels_.assign(static_cast<size_t>(count), -1);
    if (reader_->has_labels()) reader_->read_labels(start, count, labels_.data());
    const std::vector<std::string> keys = reader_->read_keys(start, count);
    const std::vector<std::string> captions =
        want_captions_ ? reader_->read_captions(start, count) : std::vector<std::string>(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) {
      const size_t k = static_cast<size_t>(i);
      const uint8_t* px = pixels_.data() + img * k;
      size_t n = img;
      if (encoded) {
        const int64_t base = reader_->image_offset(start);
        px = pixels_.data() + (reader_->image_offset(start + i) - base);
        n = static_cast<size_t>(reader_->image_offset(start + i + 1) - reader_->image_offset(start + i));
      }
      sink(start + i, px, n, tokens_.data() + static_cast<size_t>(L) * k, L, labels_[k], keys[k], captions[k]);
    }
  }
  void close() {
    reader_.reset();
    open_shard_ = -1;
  }

 private:
  void check_headers(int64_t start, int64_t count) const {
    const int64_t base = reader_->image_offset(start);
    for (int64_t r = start; r < start + count; ++r) {
      const uint8_t* p = pixels_.data() + (reader_->image_offset(r) - base);
      const size_t n = static_cast<size_t>(reader_->image_offset(r + 1) - reader_->image_offset(r));
      const auto [w, h] = reader_->stored_size(r);
      const ImageFormat f = sniff_image_format(p, n);
      try {
        if (f == ImageFormat::unknown) throw ImageDecodeError(ImageFault::not_an_image, "not an image file");
        int hw = 0, hh = 0;
        if (f == ImageFormat::jpeg) {
          const JpegInfo info = jpeg_info(p, n);
          hw = info.width, hh = info.height;
        } else if (f == ImageFormat::png || f == ImageFormat::webp) {
          const PngWebpHeader info = png_webp_header(p, n);
          hw = info.width, hh = info.height;
        } else {
          throw ImageDecodeError(ImageFault::unsupported_format,
                                 str_cat(image_format_name(f), " (JPEG, PNG and WebP only)"));
        }
        if (hw != w || hh != h)
          throw ImageDecodeError(ImageFault::corrupt,
                                 str_cat("header says ", hw, "x", hh, ", image_sizes says ", w, "x", h));
      } catch (const ImageDecodeError& e) {
        throw Error(str_cat("shard ", reader_->path(), " row ", r, ": image bytes are damaged: ", e.what()));
      }
    }
  }

  const ShardIndex& index_;
  std::string dir_;
  bool want_captions_ = false;
  std::unique_ptr<ShardReader> reader_;
  int32_t open_shard_ = -1;
  std::vector<uint8_t> pixels_;
  std::vector<int32_t> tokens_;
  std::vector<int32_t> labels_;
};

}  // namespace detail

using detail::ChunkSource;

void check_text_fits(const ShardIndex& index, const LoaderOptions& o) {
  if (index.context_length > 0) {
    COCA_CHECK(o.context_length <= 0 || index.context_length == o.context_length, o.dir, ": shards hold ",
               index.context_length, "-token captions, ", o.model_name, " wants ", o.context_length,
               " (re-shard with --context-length ", o.context_length, ", or without it to tokenize at load time)");
    const int64_t stored_vocab = index.vocab_size();
    COCA_CHECK(o.vocab_size <= 0 || stored_vocab <= o.vocab_size, o.dir, ": shards were tokenized with a ",
               stored_vocab, "-token vocabulary, ", o.model_name, " has vocab_size ", o.vocab_size);
    return;
  }
  if (!o.tokenizer) return;
  COCA_CHECK(o.vocab_size <= 0 || o.tokenizer->vocab_size() <= o.vocab_size, o.dir, ": the tokenizer has a ",
             o.tokenizer->vocab_size(), "-token vocabulary, ", o.model_name, " has vocab_size ", o.vocab_size);
}

ShardLoader::ShardLoader(LoaderOptions options) : opt_(std::move(options)) {
  sources_ = load_train_sources(opt_.dir);
  index_ = sources_.index;
  COCA_CHECK(opt_.upsampling_factors.empty() || opt_.resampled,
             "loader: upsampling factors weigh resampled draws (--dataset-resampled); without it an epoch reads "
             "every source once");
  COCA_CHECK(opt_.batch_size > 0, "loader: batch size must be positive");
  COCA_CHECK(opt_.threads >= 1, "loader: needs at least one worker thread");
  COCA_CHECK(opt_.scale_min > 0 && opt_.scale_min <= opt_.scale_max && opt_.scale_max <= 1.0,
             "loader: crop scale range (", opt_.scale_min, ", ", opt_.scale_max, ") must lie in (0, 1]");
  out_size_ = opt_.image_size > 0 ? opt_.image_size : index_.image_size;
  check_text_fits(index_, opt_);
  tokenize_ = index_.context_length == 0 && opt_.tokenizer != nullptr;
  COCA_CHECK(!tokenize_ || opt_.context_length > 0, "loader: tokenizing captions needs the model's context length");
  cfg_.seed = opt_.seed;
  cfg_.rank = opt_.rank;
  cfg_.world = opt_.world;
  cfg_.batch_size = opt_.batch_size;
  cfg_.shuffle_buffer = opt_.shuffle_buffer;
  cfg_.chunk_rows = index_.chunk_images > 0 ? index_.chunk_images : 16;
  cfg_.shuffle_chunks = opt_.shuffle_chunks;
  cfg_.resampled = opt_.resampled;
  cfg_.epoch_samples = opt_.epoch_samples;
  cfg_.shard_weights = shard_weights(sources_, opt_.upsampling_factors);
  shard_offset_ = offsets_of(index_);
  coca::batches_per_epoch(index_, cfg_, 0);  // validates rank/world against the shard count
}

ShardLoader::~ShardLoader() { stop_threads(); }

int64_t ShardLoader::batches_per_epoch(int64_t epoch) const { return coca::batches_per_epoch(index_, cfg_, epoch); }

void ShardLoader::stop_threads() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (producer_.joinable()) producer_.join();
  for (auto& w : workers_) w.join();
  workers_.clear();
  jobs_.clear();
  ready_.clear();
  skips_at_.clear();
  error_ = nullptr;
  stop_ = false;
}

void ShardLoader::launch(int64_t epoch, int64_t first_batch, const std::vector<SkippedShard>& known_skips,
                         const std::vector<StreamSegment>& segments) {
  stop_threads();
  epoch_ = epoch;
  segments_ = segments;
  consumed_.reset();
  consumed_count_ = segment_samples(segments_);
  if (!segments_.empty()) consumed_ = std::make_unique<ConsumedSet>(replay_segments(index_, cfg_, epoch, segments_));
  total_ = coca::batches_per_epoch(index_, cfg_, epoch, consumed_.get(), consumed_count_);
  COCA_CHECK(first_batch >= 0 && first_batch <= total_, "loader: cannot resume at batch ", first_batch, " of epoch ",
             epoch, ", which has ", total_);
  consumed_batches_ = produced_ = first_batch;
  skipped_ = known_skips;
  producer_ = std::thread(&ShardLoader::producer_main, this, epoch, first_batch, known_skips);
  for (int t = 0; t < opt_.threads; ++t) workers_.emplace_back(&ShardLoader::worker_main, this);
}

void ShardLoader::start_epoch(int64_t epoch) { launch(epoch, 0, {}, {}); }

void ShardLoader::restore(const LoaderState& st) { launch(st.epoch, st.batch, st.skipped, st.segments); }

LoaderState ShardLoader::state() const { return {epoch_, consumed_batches_, skipped_, segments_}; }

void ShardLoader::fail(std::exception_ptr e) {
  {
    std::lock_guard<std::mutex> g(mu_);
    if (!error_) error_ = e;
  }
  cv_.notify_all();
}

void ShardLoader::producer_main(int64_t epoch, int64_t first_batch, std::vector<SkippedShard> known) {
  try {
    SampleStream stream(index_, cfg_, epoch, consumed_.get(), consumed_count_, static_cast<int64_t>(segments_.size()));
    ChunkSource source(index_, opt_.dir, tokenize_);
    std::unordered_multimap<uint64_t, Sample> store;  // read, not yet emitted (resampling may repeat a row)
    const ConsumedSet* earlier = stream.excluded();  // whole chunks are read; their taken rows are not kept
    auto keep = [&store, earlier](int32_t shard) {
      return [&store, earlier, shard](int64_t row, const uint8_t* px, size_t n, const int32_t* tok, int L,
                                      int32_t label, const std::string& key, const std::string& caption) {
        if (earlier && earlier->contains({shard, row})) return;  // emitted by an earlier segment
        Sample s;
        s.ref = {shard, row};
        s.pixels.assign(px, px + n);
        s.tokens.assign(tok, tok + L);
        s.label = label;
        s.key = key;
        s.caption = caption;
        store.emplace(ref_key(s.ref), std::move(s));
      };
    };
    auto dry = [&](const SampleStream::ChunkRead& c) { return !SampleStream::is_known_skip(known, c); };
    auto wet = [&](const SampleStream::ChunkRead& c) {
      if (SampleStream::is_known_skip(known, c)) return false;
      try {
        source.read(c.shard, c.start, c.count, keep(c.shard));
        return true;
      } catch (const Error& e) {
        source.close();
        if (!opt_.skip_bad_shards) throw;
        std::fprintf(stderr, "coca loader: warning: rank %d skips shard %s after a read failure (%s)\n", opt_.rank,
                     index_.shards[static_cast<size_t>(c.shard)].file.c_str(), e.what());
        return false;
      }
    };
    SampleRef ref;
    const int64_t skip = first_batch * opt_.batch_size;
    for (int64_t i = 0; i < skip; ++i)
      COCA_CHECK(stream.next(ref, dry), "loader: cannot replay to batch ", first_batch);
    if (skip > 0) {
      // Reload what the shuffle buffer held at the resume point, a chunk at a time.
      std::vector<SampleRef> held = stream.buffered();
      std::sort(held.begin(), held.end(), [](const SampleRef& a, const SampleRef& b) {
        return a.shard != b.shard ? a.shard < b.shard : a.row < b.row;
      });
      std::vector<uint64_t> wanted;
      for (const auto& r : held) wanted.push_back(ref_key(r));
      std::sort(wanted.begin(), wanted.end());
      for (size_t i = 0; i < held.size();) {
        const int32_t shard = held[i].shard;
        const int64_t chunk_start = held[i].row / cfg_.chunk_rows * cfg_.chunk_rows;
        const int64_t n = std::min<int64_t>(cfg_.chunk_rows, index_.shards[static_cast<size_t>(shard)].samples - chunk_start);
        auto sink = keep(shard);
        source.read(shard, chunk_start, n, [&](int64_t row, const uint8_t* px, size_t bytes, const int32_t* tok, int L,
                                               int32_t label, const std::string& key, const std::string& caption) {
          const auto range = std::equal_range(wanted.begin(), wanted.end(), ref_key({shard, row}));
          for (auto it = range.first; it != range.second; ++it) sink(row, px, bytes, tok, L, label, key, caption);
        });
        while (i < held.size() && held[i].shard == shard && held[i].row < chunk_start + n) ++i;
        // Repeats of a row (resampling) were all loaded by the first pass over its chunk.
      }
    }
    int64_t step = first_batch;
    auto batch = std::make_unique<RawBatch>();
    while (stream.next(ref, wet)) {
      auto it = store.find(ref_key(ref));
      COCA_CHECK(it != store.end(), "loader: internal error: sample ", ref.shard, ":", ref.row, " was not read");
      Sample s = std::move(it->second);
      store.erase(it);
      s.position = stream.emitted() - 1;
      batch->samples.push_back(std::move(s));
      if (static_cast<int>(batch->samples.size()) < opt_.batch_size) continue;
      batch->step = step++;
      batch->skips = stream.skipped();
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || produced_ - consumed_batches_ < opt_.prefetch + opt_.threads; });
      if (stop_) return;
      jobs_.push_back(std::move(batch));
      ++produced_;
      lock.unlock();
      cv_.notify_all();
      batch = std::make_unique<RawBatch>();
    }
  } catch (...) {
    fail(std::current_exception());
  }
}

void ShardLoader::worker_main() {
  try {
    for (;;) {
      std::unique_ptr<RawBatch> job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
        if (stop_) return;
        job = std::move(jobs_.front());
        jobs_.erase(jobs_.begin());
      }
      auto out = std::make_unique<Batch>();
      const int B = static_cast<int>(job->samples.size());
      const int H = out_size_;
      const int S = index_.image_size;
      out->images = take_image_tensor({B, 3, H, H});
      float* img = out->images.data<float>();
      const int L = tokenize_ ? opt_.context_length
                              : job->samples.empty() ? 0 : static_cast<int>(job->samples[0].tokens.size());
      const bool encoded = index_.format_version == kShardFormatVersionEncoded;
      if (L > 0) out->tokens = Tensor::empty({B, L}, DType::i32);
      if (index_.has_labels()) out->labels = Tensor::empty({B}, DType::i32);
      out->source_counts.assign(sources_.size(), 0);
      AugmentParams ap{opt_.augment, opt_.scale_min, opt_.scale_max, opt_.ratio_min, opt_.ratio_max, opt_.filter,
                       opt_.mean, opt_.std, opt_.augment ? opt_.color : ColorAugmentParams{}};
      for (int i = 0; i < B; ++i) {
        const Sample& s = job->samples[static_cast<size_t>(i)];
        Generator g(mix_seed(mix_seed(opt_.seed, static_cast<uint64_t>(epoch_), static_cast<uint64_t>(opt_.rank),
                                      0xA06 + segments_.size() * 0x1000),
                             static_cast<uint64_t>(s.position)));
        float* dst = img + static_cast<size_t>(i) * 3 * H * H;
        if (encoded) {
          try {
            transform_encoded(s.pixels.data(), s.pixels.size(), H, ap, g, dst);
          } catch (const ImageDecodeError& e) {
            throw Error(str_cat("shard ", index_.shard_path(opt_.dir, static_cast<size_t>(s.ref.shard)), " row ",
                                s.ref.row, ": image cannot be decoded: ", e.what()));
          }
        } else {
          const RgbView view{s.pixels.data(), S, S, static_cast<int64_t>(S) * 3};
          transform_sample(view, H, ap, g, dst);
        }
        int32_t* trow = L > 0 ? out->tokens.data<int32_t>() + static_cast<size_t>(i) * L : nullptr;
        if (tokenize_) {
          const std::vector<int32_t> ids = opt_.tokenizer->encode_row(s.caption, L);
          std::memcpy(trow, ids.data(), sizeof(int32_t) * L);
        } else if (L > 0) {
          std::memcpy(trow, s.tokens.data(), sizeof(int32_t) * L);
        }
        if (out->labels.defined()) out->labels.data<int32_t>()[i] = s.label;
        out->keys.push_back(s.key);
        out->indices.push_back(shard_offset_[static_cast<size_t>(s.ref.shard)] + s.ref.row);
        ++out->source_counts[static_cast<size_t>(sources_.shard_source[static_cast<size_t>(s.ref.shard)])];
      }
      out->epoch = epoch_;
      out->step = job->step;
      {
        std::lock_guard<std::mutex> g(mu_);
        skips_at_[job->step] = std::move(job->skips);
        ready_[job->step] = std::move(out);
      }
      cv_.notify_all();
    }
  } catch (...) {
    fail(std::current_exception());
  }
}

Tensor ShardLoader::take_image_tensor(const Shape& shape) {
  std::lock_guard<std::mutex> g(mu_);
  for (const Tensor& t : image_pool_) {
    // Free when only the pool refers to the tensor and to its storage (no views alive).
    if (t.impl_ptr().use_count() == 1 && t.impl().storage.use_count() == 1 && t.shape() == shape) {
      return Tensor(std::make_shared<TensorImpl>(t.impl()));  // a new handle on the same storage
    }
  }
  Tensor fresh = Tensor::empty(shape, DType::f32);
  if (image_pool_.size() < static_cast<size_t>(opt_.prefetch + 2 * opt_.threads + 4)) image_pool_.push_back(fresh);
  return fresh;
}

bool ShardLoader::next(Batch& out) {
  if (!producer_.joinable()) start_epoch(epoch_);
  std::unique_lock<std::mutex> lock(mu_);
  if (consumed_batches_ >= total_) return false;
  cv_.wait(lock, [&] { return error_ || ready_.count(consumed_batches_); });
  if (error_) std::rethrow_exception(error_);
  out = std::move(*ready_[consumed_batches_]);
  ready_.erase(consumed_batches_);
  skipped_ = std::move(skips_at_[consumed_batches_]);
  skips_at_.erase(consumed_batches_);
  ++consumed_batches_;
  lock.unlock();
  cv_.notify_all();
  return true;
}

// ---- evaluation -----------------------------------------------------------------------

EvalReader::EvalReader(EvalOptions options) : opt_(std::move(options)) {
  index_ = ShardIndex::load(opt_.dir);
  COCA_CHECK(opt_.batch_size > 0, "eval reader: batch size must be positive");
  COCA_CHECK(opt_.world >= 1 && opt_.rank >= 0 && opt_.rank < opt_.world, "eval reader: rank ", opt_.rank,
             " is not in a world of ", opt_.world);
  shard_offset_ = offsets_of(index_);
  COCA_CHECK(opt_.max_samples >= 0, "eval reader: max_samples must be >= 0, got ", opt_.max_samples);
  const int64_t total = opt_.max_samples > 0 ? std::min(opt_.max_samples, index_.total_samples) : index_.total_samples;
  begin_ = total * opt_.rank / opt_.world;
  end_ = total * (opt_.rank + 1) / opt_.world;
  pos_ = begin_;
  out_size_ = opt_.image_size > 0 ? opt_.image_size : index_.image_size;
  source_ = std::make_unique<ChunkSource>(index_, opt_.dir);
}

EvalReader::~EvalReader() = default;

bool EvalReader::next(Batch& out) {
  if (pos_ >= end_) return false;
  const int64_t n = std::min<int64_t>(opt_.batch_size, end_ - pos_);
  const int H = out_size_, S = index_.image_size;
  out = Batch();
  out.images = Tensor::empty({n, 3, H, H}, DType::f32);
  if (index_.context_length > 0) out.tokens = Tensor::empty({n, index_.context_length}, DType::i32);
  if (index_.has_labels()) out.labels = Tensor::empty({n}, DType::i32);
  out.step = step_++;
  ChunkSource& source = *source_;
  // Evaluation never jitters.
  AugmentParams centre_only{false, 1.0, 1.0, 1.0, 1.0, opt_.filter, opt_.mean, opt_.std, ColorAugmentParams{}};
  Generator unused(0);
  int64_t done = 0;
  while (done < n) {
    const int64_t g = pos_ + done;
    const size_t shard = static_cast<size_t>(std::upper_bound(shard_offset_.begin(), shard_offset_.end(), g) - shard_offset_.begin() - 1);
    const int64_t row = g - shard_offset_[shard];
    const int64_t take = std::min(n - done, index_.shards[shard].samples - row);
    source.read(static_cast<int32_t>(shard), row, take,
                [&](int64_t r, const uint8_t* px, size_t bytes, const int32_t* tok, int L, int32_t label,
                    const std::string& key, const std::string&) {
                  const int64_t i = done + (r - row);
                  float* dst = out.images.data<float>() + static_cast<size_t>(i) * 3 * H * H;
                  if (index_.format_version == kShardFormatVersionEncoded) {
                    try {
                      transform_encoded(px, bytes, H, centre_only, unused, dst);
                    } catch (const ImageDecodeError& e) {
                      throw Error(str_cat("shard ", index_.shard_path(opt_.dir, shard), " row ", r,
                                          ": image cannot be decoded: ", e.what()));
                    }
                  } else {
                    const RgbView view{px, S, S, static_cast<int64_t>(S) * 3};
                    transform_sample(view, H, centre_only, unused, dst);
                  }
                  if (L > 0 && out.tokens.defined())
                    std::memcpy(out.tokens.data<int32_t>() + static_cast<size_t>(i) * L, tok, sizeof(int32_t) * L);
                  if (out.labels.defined()) out.labels.data<int32_t>()[i] = label;
                  out.keys.push_back(key);
                  out.indices.push_back(shard_offset_[shard] + r);
                });
    done += take;
  }
  pos_ += n;
  return true;
}

}  // namespace coca
