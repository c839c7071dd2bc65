// coca-shard: turns captioned images (CSV/TSV, COCO captions, WebDataset tars) or an
// image-folder classification set into HDF5 shards plus index.json; see README.md here.
// The inputs are cut into parts (a tar, a block of table rows; see shard_convert.h), shared
// among the ranks round robin and streamed. Each finished part leaves a record, so a killed
// run continues where it stopped; rank 0 writes index.json last, from the records, and
// --append adds parts to an existing set.
#include <mpi.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "coca/data/bundled.h"
#include "coca/data/input_files.h"
#include "coca/data/shard_build.h"
#include "coca/data/shard_convert.h"
#include "coca/data/shard_index.h"
#include "coca/data/sha256.h"

namespace fs = std::filesystem;
namespace po = boost::program_options;
using namespace coca;

#define MPI_CHECK(call)                                                                      \
  do {                                                                                       \
    const int mpi_rc_ = (call);                                                              \
    if (mpi_rc_ != MPI_SUCCESS) {                                                            \
      char msg_[MPI_MAX_ERROR_STRING];                                                       \
      int len_ = 0;                                                                          \
      MPI_Error_string(mpi_rc_, msg_, &len_);                                                \
      throw coca::Error(coca::str_cat("MPI: ", #call, " failed at ", __FILE__, ":", __LINE__, \
                                      ": ", std::string(msg_, static_cast<size_t>(len_))));  \
    }                                                                                        \
  } while (0)

namespace {

// The command line, shell-quoted where needed, so it can be re-run.
std::string command_line(int argc, char** argv, int world) {
  std::string cmd;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (i > 0) cmd += ' ';
    if (!a.empty() && a.find_first_of(" \t'\"$\\;&|<>()*?{}") == std::string::npos) {
      cmd += a;
    } else {
      cmd += '\'';
      for (char c : a) cmd += c == '\'' ? std::string("'\\''") : std::string(1, c);
      cmd += '\'';
    }
  }
  return world > 1 ? str_cat("mpirun -np ", world, " ", cmd) : cmd;
}

std::string json_text(const nlohmann::json& j) { return j.is_string() ? j.get<std::string>() : j.dump(); }

// j[key] when j is an object holding it (an index's "source" and "extra" may be null).
template <typename T>
T field_or(const nlohmann::json& j, const char* key, T fallback) {
  return j.is_object() && j.contains(key) ? j.at(key).get<T>() : fallback;
}

// The first setting that differs between two settings objects, as "key: A then, B now".
std::string first_difference(const nlohmann::json& then, const nlohmann::json& now) {
  for (const auto& [key, value] : now.items()) {
    const nlohmann::json old = then.contains(key) ? then.at(key) : nlohmann::json();
    if (old != value) return str_cat(key, ": ", json_text(old), " then, ", json_text(value), " now");
  }
  for (const auto& [key, value] : then.items())
    if (!now.contains(key)) return str_cat(key, ": ", json_text(value), " then, not set now");
  return "";
}

// What --append requires of the existing set, as (flag, the set's value, this run's value).
std::string append_refusal(const ShardIndex& old, const ShardIndex& now, const std::string& old_reencode,
                           const std::string& now_reencode, const std::string& dir) {
  auto differs = [&](const char* what, const std::string& a, const std::string& b) {
    return a == b ? std::string() : str_cat("--append: ", dir, " was made with ", what, " ", a, ", this run has ", b);
  };
  // Tokenizers by their sha256; an index that names one without it, by vocabulary size.
  const bool both_sha = old.tokenizer.is_object() && old.tokenizer.contains("sha256") && now.tokenizer.is_object() &&
                        now.tokenizer.contains("sha256");
  auto tok = [&](const nlohmann::json& t) {
    if (!t.is_object()) return std::string("none");
    if (both_sha) return "sha256 " + t.at("sha256").get<std::string>().substr(0, 12);
    return str_cat("of ", t.value("vocab_size", int64_t{0}), " tokens");
  };
  for (const std::string& r :
       {differs("--image-format", old.image_format, now.image_format),
        differs(now.image_format == "jpeg" ? "--max-side" : "--image-size", std::to_string(old.image_size),
                std::to_string(now.image_size)),
        differs("--reencode", old_reencode, now_reencode),
        differs("--chunk-images", std::to_string(old.chunk_images), std::to_string(now.chunk_images)),
        differs("--compression", old.compression, now.compression),
        differs("stored tokens of length (--context-length)", std::to_string(old.context_length),
                std::to_string(now.context_length)),
        differs("the tokenizer", tok(old.tokenizer), tok(now.tokenizer)),
        differs("labels (--format folder)", old.has_labels() ? "yes" : "no", now.has_labels() ? "yes" : "no")})
    if (!r.empty()) return r;
  return "";
}

int run(int argc, char** argv, int rank, int world) {
  std::string format, input, images_root, output, tokenizer_path, compression = "none", classnames_file,
              class_ids_file;
  std::string csv_sep = "\\t", csv_img = "filepath", csv_cap = "title", filter_name = "bicubic";
  std::vector<std::string> extra_inputs;
  int image_size = 256, chunk_images = 16, threads = 1, context_length = 77, gzip_level = 4;
  std::string image_format_name = "jpeg", reencode_arg = "auto";
  int max_side = 512, jpeg_quality = 90;
  int64_t samples_per_shard = 1000, max_items = -1, shuffle_seed = -1, rows_per_part = 10000;
  bool overwrite = false, append = false, quiet = false;
  po::options_description desc(
      "coca-shard: build HDF5 training shards from captioned images.\n"
      "Usage: coca-shard --format csv|coco|wds|folder --input PATH [...] --output DIR\n"
      "       coca-shard --format wds --input 'shards/{00000..00999}.tar' --output DIR\n"
      "       mpirun -np N coca-shard ...   (ranks share the input files / row blocks)\n"
      "A killed run, started again with the same arguments, continues where it stopped.\nOptions");
  desc.add_options()("help,h", "show this help")
      ("format", po::value(&format)->required(), "input kind: csv (CSV/TSV table), coco (captions JSON), "
       "wds (WebDataset tars), folder (root/<class>/<image> classification set)")
      ("input", po::value(&input)->required(), "the table, the COCO JSON, a tar (more as positional arguments), "
       "or the folder root. wds: brace patterns ('shards/{00000..00099}.tar', '{a,b}') and 'pipe:COMMAND' (a tar "
       "read from the command's standard output, e.g. 'pipe:curl -s URL')")
      ("tars", po::value(&extra_inputs)->multitoken(), "more WebDataset tars (patterns and pipe: as --input)")
      ("images-root", po::value(&images_root), "folder that relative image paths (csv) or file_name (coco) are under")
      ("output", po::value(&output)->required(), "output directory for the shards and index.json")
      ("append", po::bool_switch(&append), "add the inputs to the shard set already in --output (same image "
       "format, image settings and tokenizer); its index then lists old and new shards")
      ("image-format", po::value(&image_format_name), "jpeg (default): images stored encoded (format 2), cropped "
       "at load time; raw: decoded S x S pixels (format 1)")
      ("max-side", po::value(&max_side), "jpeg: images whose longer side is at most N may be stored as given "
       "(see --reencode); larger ones are resized to fit N (aspect kept, no crop) and re-encoded (512)")
      ("reencode", po::value(&reencode_arg), "jpeg: auto (default): JPEG, PNG and WebP files that fit --max-side "
       "stored as given, the rest re-encoded as PNG when the source is lossless (PNG, lossless WebP), else as JPEG; "
       "jpeg: only JPEGs stored as given, the rest re-encoded as JPEG; png: everything re-encoded as PNG")
      ("jpeg-quality", po::value(&jpeg_quality), "jpeg: quality of images re-encoded as JPEG, 1-100 (90)")
      ("image-size", po::value(&image_size), "raw: S: shorter side resized to S, then centre-cropped to S x S (256)")
      ("samples-per-shard", po::value(&samples_per_shard), "samples per shard file at most (1000); a shard never "
       "spans two input files or row blocks")
      ("rows-per-part", po::value(&rows_per_part), "csv, coco, folder: rows (items) per block, the unit that ranks "
       "share and that a rerun resumes by (10000); wds: each tar is one")
      ("chunk-images", po::value(&chunk_images), "images per HDF5 chunk, the loader's read unit (16)")
      ("compression", po::value(&compression), "none (default), gzip or lzf")
      ("gzip-level", po::value(&gzip_level), "gzip level 1-9 (4)")
      ("tokenizer", po::value(&tokenizer_path), "CLIP-format BPE merges file; adds a tokens dataset")
      ("context-length", po::value(&context_length), "L: tokens per caption with --tokenizer (raw: 77). jpeg: "
       "tokens are stored only when L is given; otherwise the trainer tokenizes the captions at load time with "
       "the tokenizer index.json names, at the model's context length")
      ("filter", po::value(&filter_name), "resize filter: bicubic (default), lanczos3, bilinear")
      ("threads", po::value(&threads), "decode threads per rank (1)")
      ("csv-separator", po::value(&csv_sep), "field separator: \\t (default, OpenCLIP) or ,")
      ("csv-image-key", po::value(&csv_img), "image path column (filepath); relative paths are under "
       "--images-root, else the table's folder")
      ("csv-img-key", po::value(&csv_img), "the same as --csv-image-key (OpenCLIP's spelling)")
      ("csv-caption-key", po::value(&csv_cap), "caption column (title)")
      ("classnames", po::value(&classnames_file), "folder: class names, one per line in sorted folder order "
       "(in --class-ids order with it), or folder<TAB>name lines (default: folder names, '_' as space); "
       "a path or a bundled list (imagenet1k)")
      ("class-ids", po::value(&class_ids_file), "folder: class ids in label order, one per line; each folder is "
       "named by one and takes its position as label (ImageNet: imagenet1k_wnids, the WordNet ids)")
      ("shuffle-seed", po::value(&shuffle_seed), "csv, coco, folder: list every item, shuffle them with this seed, "
       "then shard (small inputs in a sorted order); default: input order, streamed. Large sets are mixed at "
       "training time by the loader")
      ("max-items", po::value(&max_items), "csv: only the first N rows; coco, folder: the first N items (testing)")
      ("overwrite", po::bool_switch(&overwrite), "replace a previous output in --output")
      ("quiet", po::bool_switch(&quiet), "no progress lines");
  po::positional_options_description pos;
  pos.add("tars", -1);
  po::variables_map vm;
  po::store(po::command_line_parser(argc, argv).options(desc).positional(pos).run(), vm);
  if (vm.count("help")) {
    if (rank == 0) std::cout << desc << "\n";
    return 0;
  }
  po::notify(vm);
  const ShardImageFormat image_format = parse_shard_image_format(image_format_name);
  const bool encoded = image_format == ShardImageFormat::jpeg;
  COCA_CHECK(!encoded || !vm.count("image-size"), "--image-size applies to --image-format raw; jpeg shards keep "
             "each image's aspect ratio, its longer side at most --max-side");
  COCA_CHECK(max_side > 0 && max_side <= 8192, "--max-side must be in 1..8192, got ", max_side);
  COCA_CHECK(jpeg_quality >= 1 && jpeg_quality <= 100, "--jpeg-quality must be in 1..100, got ", jpeg_quality);
  const Reencode reencode = parse_reencode(reencode_arg);
  COCA_CHECK(encoded || !vm.count("reencode"), "--reencode applies to --image-format jpeg; raw shards store "
             "decoded pixels");
  if (encoded) image_size = max_side;
  const bool store_tokens = !tokenizer_path.empty() && (!encoded || vm.count("context-length"));
  COCA_CHECK(image_size > 0 && image_size <= 4096, "--image-size must be in 1..4096");
  COCA_CHECK(chunk_images > 0, "--chunk-images must be positive");
  COCA_CHECK(samples_per_shard > 0, "--samples-per-shard must be positive");
  COCA_CHECK(rows_per_part > 0, "--rows-per-part must be positive");
  COCA_CHECK(format == "csv" || format == "coco" || format == "wds" || format == "folder", "unknown --format '",
             format, "' (csv, coco, wds, folder)");
  COCA_CHECK(format != "wds" || shuffle_seed < 0, "--shuffle-seed does not apply to --format wds: each tar is "
             "streamed as it is, and the loader mixes samples across shards at training time");
  COCA_CHECK(format != "wds" || max_items < 0, "--max-items does not apply to --format wds (give fewer tars)");
  COCA_CHECK(!(append && overwrite), "--append and --overwrite contradict each other");
  COCA_CHECK(format == "wds" || extra_inputs.empty(), "--format ", format, " takes one --input (",
             extra_inputs.size() + 1, " given)");

  // ---- inputs: braces expanded; every rank the same list ----
  ConvertOptions co;
  co.format = format;
  if (format == "wds") {
    std::vector<std::string> given{input};
    given.insert(given.end(), extra_inputs.begin(), extra_inputs.end());
    for (const auto& g : given)
      for (auto& name : expand_braces(g)) co.inputs.push_back(std::move(name));
  } else {
    co.inputs = {input};
  }
  co.csv.separator = csv_sep == "\\t" || csv_sep == "tab" ? '\t' : csv_sep.empty() ? ',' : csv_sep[0];
  co.csv.image_column = csv_img;
  co.csv.caption_column = csv_cap;
  co.csv.images_root = images_root;
  co.images_root = images_root;
  if (format == "coco") COCA_CHECK(!images_root.empty(), "--format coco needs --images-root (the folder with the images)");
  if (format == "folder") {
    if (!classnames_file.empty()) classnames_file = resolve_bundled_file("classnames", classnames_file, "--classnames");
    if (!class_ids_file.empty()) class_ids_file = resolve_bundled_file("classnames", class_ids_file, "--class-ids");
  }
  co.classnames_file = classnames_file;
  co.class_ids_file = class_ids_file;
  co.rows_per_part = rows_per_part;
  co.shuffle_seed = shuffle_seed;
  co.max_items = max_items;
  co.rank = rank;
  co.world = world;
  co.progress = !quiet;

  BpeTokenizer tokenizer;
  BuildOptions& bo = co.build;
  bo.out_dir = output;
  bo.layout.image_size = image_size;
  bo.layout.chunk_images = chunk_images;
  bo.layout.compression = parse_compression(compression);
  bo.layout.gzip_level = gzip_level;
  bo.layout.labels = format == "folder";
  if (!tokenizer_path.empty()) {
    tokenizer = BpeTokenizer::load(tokenizer_path);
    if (store_tokens) {
      bo.tokenizer = &tokenizer;
      bo.layout.context_length = context_length;
    }
  }
  bo.layout.image_format = image_format;
  bo.jpeg_quality = jpeg_quality;
  bo.reencode = reencode;
  bo.samples_per_shard = samples_per_shard;
  bo.threads = threads;
  bo.filter = parse_resample_filter(filter_name);
  bo.rank = rank;

  // The index this run would write for its own inputs (the fields --append compares).
  ShardIndex index;
  index.format_version = shard_format_version(image_format);
  index.image_format = shard_image_format_name(image_format);
  index.image_size = image_size;
  index.chunk_images = chunk_images;
  index.compression = compression;
  index.checksum = kShardChecksumName;
  index.context_length = store_tokens ? context_length : 0;
  if (!tokenizer_path.empty())
    index.tokenizer = {{"file", fs::absolute(tokenizer_path).string()}, {"sha256", sha256_file(tokenizer_path)},
                       {"vocab_size", tokenizer.vocab_size()}, {"sot", tokenizer.sot()}, {"eot", tokenizer.eot()},
                       {"pad", BpeTokenizer::pad()}, {"kind", "clip-bpe"}};
  if (format == "folder") index.classnames = folder_classnames(co);
  const std::string reencode_str = encoded ? reencode_name(reencode) : "";

  // Everything the shards depend on: a rerun continues only with the same.
  std::string inputs_text;
  for (const auto& in : co.inputs) inputs_text += (is_pipe_input(in) ? in : fs::absolute(in).string()) + "\n";
  const nlohmann::json settings = {
      {"format", format}, {"inputs_sha256", sha256_hex(inputs_text.data(), inputs_text.size())}, {"inputs", co.inputs.size()},
      {"image_format", index.image_format}, {"image_size", image_size}, {"reencode", reencode_str},
      {"jpeg_quality", jpeg_quality}, {"filter", filter_name}, {"chunk_images", chunk_images},
      {"compression", compression}, {"gzip_level", gzip_level}, {"context_length", index.context_length},
      {"tokenizer", index.tokenizer.is_object() ? index.tokenizer.at("sha256") : nlohmann::json()},
      {"samples_per_shard", samples_per_shard}, {"rows_per_part", rows_per_part},
      {"csv", {std::string(1, co.csv.separator), csv_img, csv_cap}},
      {"images_root", images_root.empty() ? "" : fs::absolute(images_root).string()},
      {"classnames", index.classnames}, {"shuffle_seed", shuffle_seed}, {"max_items", max_items},
      {"append", append}};

  // ---- the output directory: fresh, resumed, appended to, or refused (rank 0 decides) ----
  // <out>/.coca-shard/settings.json holds this conversion's settings, the part it starts at
  // and the set it appends to (base_index); "finished" once index.json is published.
  const fs::path conv_dir = fs::path(output) / kConversionDirName;
  const std::string settings_path = (conv_dir / "settings.json").string();
  std::string refusal;
  nlohmann::json run_state;  // settings + first_part, base_index, finished
  if (rank == 0) {
    try {
      fs::create_directories(output);
      if (overwrite) remove_previous_output(output);
      nlohmann::json then;
      if (fs::exists(settings_path)) {
        try {
          std::ifstream f(settings_path);
          then = nlohmann::json::parse(f);
        } catch (const nlohmann::json::exception& e) {
          throw Error(str_cat(settings_path, ": not valid JSON; pass --overwrite to start over"));
        }
      }
      if (then.is_object() && !then.value("finished", false)) {
        nlohmann::json then_settings = then;
        for (const char* k : {"first_part", "base_index", "finished"}) then_settings.erase(k);
        const std::string diff = first_difference(then_settings, settings);
        const bool unfinished_append = then.contains("base_index") && !then.at("base_index").is_null();
        COCA_CHECK(diff.empty(), output, " holds an unfinished conversion with other settings (", diff, "); ",
                   unfinished_append ? "run that --append again to finish it first (--overwrite would replace the "
                                       "whole set)"
                                     : "run its command again to finish it, or pass --overwrite to start over");
        run_state = then;
        if (!quiet) std::fprintf(stderr, "coca-shard: continuing the unfinished conversion in %s\n", output.c_str());
      } else if (fs::exists(fs::path(output) / "index.json")) {
        COCA_CHECK(append, output, " already holds a shard set; pass --append to add these inputs to it, or "
                   "--overwrite to replace it");
        const ShardIndex old = ShardIndex::load(output);
        const std::string why = append_refusal(old, index, field_or(old.extra, "reencode", std::string()), reencode_str,
                                               output);
        COCA_CHECK(why.empty(), why);
        COCA_CHECK(old.classnames == index.classnames, "--append: ", output,
                   " has other class names than this run's folder");
        const nlohmann::json old_inputs = field_or(old.source, "inputs", nlohmann::json::array());
        for (const auto& in : co.inputs) {
          const std::string name = is_pipe_input(in) ? in : fs::absolute(in).lexically_normal().string();
          for (const auto& o : old_inputs)
            COCA_CHECK(!(o.is_string() && o.get<std::string>() == name), "--append: ", in, " is already in ", output);
        }
        run_state = settings;
        run_state["first_part"] = field_or(old.extra, "parts", int64_t{0});
        run_state["base_index"] = old.to_json();
      } else {
        COCA_CHECK(!append, "--append: ", output, " holds no shard set (index.json) to add to");
        COCA_CHECK(!has_previous_output(output), output, " already holds shards; pass --overwrite to replace them");
        run_state = settings;
        run_state["first_part"] = 0;
        run_state["base_index"] = nullptr;
      }
      run_state["finished"] = false;
      fs::create_directories(conv_dir);
      write_json_atomically(settings_path, run_state);
      clean_unfinished_parts(output, run_state.at("first_part").get<int64_t>());
    } catch (const Error& e) {
      refusal = e.what();
      if (refusal.empty()) refusal = "cannot prepare the output directory";
    }
  }
  int64_t head_info[2] = {static_cast<int64_t>(refusal.size()), rank == 0 && refusal.empty()
                                                                    ? run_state.at("first_part").get<int64_t>()
                                                                    : 0};
  MPI_CHECK(MPI_Bcast(head_info, 2, MPI_INT64_T, 0, MPI_COMM_WORLD));
  if (head_info[0] > 0) {
    if (rank == 0) throw Error(refusal);
    return 1;  // rank 0 reports it
  }
  const int64_t first_part = co.first_part = head_info[1];
  bo.layout.classnames = index.classnames;

  // ---- convert this rank's parts ----
  const auto t0 = std::chrono::steady_clock::now();
  const ConvertResult result = convert_parts(co);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int64_t parts = result.parts;
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &parts, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD));
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &seconds, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
  if (rank != 0) return 0;

  // ---- rank 0: the index from the records, published last ----
  const bool has_old = !run_state.at("base_index").is_null();
  const ShardIndex old = has_old ? ShardIndex::from_json(run_state.at("base_index"), settings_path) : ShardIndex();
  SkipReport merged;
  std::vector<ShardEntry> shards = old.shards;
  for (int64_t p = first_part; p < first_part + parts; ++p) {
    PartRecord rec;
    COCA_CHECK(load_part_record(output, p, rec), "part ", p, " has no record in ", conv_dir.string(),
               " (a rank failed?); run the command again to finish it");
    shards.insert(shards.end(), rec.shards.begin(), rec.shards.end());
    merged.merge(SkipReport::from_json(rec.report));
  }
  if (has_old) index.tokenizer = old.tokenizer;  // the set's own (checked to agree)
  index.shards = shards;
  index.total_samples = 0;
  for (const auto& s : index.shards) index.total_samples += s.samples;
  nlohmann::json inputs = field_or(old.source, "inputs", nlohmann::json::array());
  for (const auto& in : co.inputs) inputs.push_back(is_pipe_input(in) ? in : fs::absolute(in).lexically_normal().string());
  const std::string source_format = has_old && field_or(old.source, "format", format) != format ? "mixed" : format;
  index.source = {{"format", source_format}, {"path", inputs.empty() ? "" : inputs.at(0)}, {"inputs", inputs}};
  if (!images_root.empty()) index.source["images_root"] = fs::absolute(images_root).string();
  if (shuffle_seed >= 0) index.source["shuffle_seed"] = shuffle_seed;
  const std::string cmd = command_line(argc, argv, world);
  index.command = has_old ? old.command : cmd;
  SkipReport all = merged;
  if (has_old && old.extra.is_object() && old.extra.contains("skipped_by_reason")) {
    nlohmann::json r = {{"skipped_by_reason", old.extra.at("skipped_by_reason")}};
    all.merge(SkipReport::from_json(r));
  }
  index.extra = {{"skipped_by_reason", all.to_json().at("skipped_by_reason")}, {"ranks", world},
                 {"parts", first_part + parts}};
  if (has_old && old.extra.is_object() && old.extra.contains("appended")) index.extra["appended"] = old.extra.at("appended");
  if (has_old) index.extra["appended"].push_back(cmd);
  if (encoded) index.extra["reencode"] = reencode_str;
  nlohmann::json rep = merged.to_json();
  rep["seconds"] = seconds;
  rep["images_per_second"] = seconds > 0 ? static_cast<double>(merged.considered) / seconds : 0.0;
  rep["shards"] = index.shards.size();
  rep["parts"] = parts;
  write_json_atomically((fs::path(output) / "report.json").string(), rep);
  index.save(output);
  run_state["finished"] = true;
  run_state["base_index"] = nullptr;
  write_json_atomically(settings_path, run_state);
  std::printf("coca-shard: %zu shards, %lld samples in %s (%.1fs, %.0f images/s)%s\n", index.shards.size(),
              static_cast<long long>(index.total_samples), output.c_str(), seconds,
              seconds > 0 ? merged.considered / seconds : 0.0, has_old ? " after --append" : "");
  std::printf("%s", merged.summary().c_str());
  std::printf("report: %s\n", (fs::path(output) / "report.json").string().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int rank = 0, world = 1;
  if (MPI_Init(&argc, &argv) != MPI_SUCCESS) {
    std::fprintf(stderr, "coca-shard: MPI_Init failed\n");
    return 1;
  }
  int rc = 0;
  try {
    MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world));
    rc = run(argc, argv, rank, world);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "coca-shard: error%s: %s\n", world > 1 ? str_cat(" (rank ", rank, ")").c_str() : "", e.what());
    if (world > 1) MPI_Abort(MPI_COMM_WORLD, 1);  // the other ranks would wait forever in a collective
    MPI_Finalize();
    return 1;
  }
  MPI_Finalize();
  return rc;
}
