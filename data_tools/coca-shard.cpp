// coca-shard: turns captioned images (CSV/TSV, COCO captions, WebDataset tars) or an
// image-folder classification set into HDF5 shards plus index.json; see README.md here.
// Under mpirun every rank lists the same inputs, takes a contiguous block, writes its own
// shards under temporary names; the counts are gathered, each rank renames its shards to
// their global numbers, and rank 0 writes index.json and report.json.
#include <mpi.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "coca/data/bundled.h"
#include "coca/data/shard_build.h"
#include "coca/data/shard_index.h"
#include "coca/data/sha256.h"
#include "coca/tensor/random.h"

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

// Gathers one string per rank on every rank.
std::vector<std::string> all_gather_strings(const std::string& mine, int world) {
  int len = static_cast<int>(mine.size());
  std::vector<int> lens(static_cast<size_t>(world));
  MPI_CHECK(MPI_Allgather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, MPI_COMM_WORLD));
  std::vector<int> displs(static_cast<size_t>(world), 0);
  for (int r = 1; r < world; ++r) displs[r] = displs[r - 1] + lens[r - 1];
  std::string all(static_cast<size_t>(displs.back() + lens.back()), '\0');
  MPI_CHECK(MPI_Allgatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), displs.data(), MPI_CHAR,
                           MPI_COMM_WORLD));
  std::vector<std::string> out;
  for (int r = 0; r < world; ++r) out.push_back(all.substr(static_cast<size_t>(displs[r]), static_cast<size_t>(lens[r])));
  return out;
}

int run(int argc, char** argv, int rank, int world) {
  std::string format, input, images_root, output, tokenizer_path, compression = "none", classnames_file,
              class_ids_file;
  std::string csv_sep = "\\t", csv_img = "filepath", csv_cap = "title", filter_name = "bicubic";
  std::vector<std::string> extra_inputs;
  int image_size = 256, chunk_images = 16, threads = 1, context_length = 77, gzip_level = 4;
  std::string image_format_name = "jpeg", reencode_arg = "auto";
  int max_side = 512, jpeg_quality = 90;
  int64_t samples_per_shard = 1000, max_items = -1, shuffle_seed = -1;
  bool overwrite = false, quiet = false;
  po::options_description desc(
      "coca-shard: build HDF5 training shards from captioned images.\n"
      "Usage: coca-shard --format csv|coco|wds|folder --input PATH [...] --output DIR\n"
      "       mpirun -np N coca-shard ...   (ranks split the input)\nOptions");
  desc.add_options()("help,h", "show this help")
      ("format", po::value(&format)->required(), "input kind: csv (CSV/TSV table), coco (captions JSON), "
       "wds (WebDataset tars), folder (root/<class>/<image> classification set)")
      ("input", po::value(&input)->required(), "the table, the COCO JSON, a tar (more as positional arguments), "
       "or the folder root")
      ("tars", po::value(&extra_inputs)->multitoken(), "more WebDataset tars")
      ("images-root", po::value(&images_root), "folder that relative image paths (csv) or file_name (coco) are under")
      ("output", po::value(&output)->required(), "output directory for shard-NNNNN.h5 and index.json")
      ("image-format", po::value(&image_format_name), "jpeg (default): images stored encoded (format 2), cropped "
       "at load time; raw: decoded S x S pixels (format 1)")
      ("max-side", po::value(&max_side), "jpeg: images whose longer side is at most N may be stored as given "
       "(see --reencode); larger ones are resized to fit N (aspect kept, no crop) and re-encoded (512)")
      ("reencode", po::value(&reencode_arg), "jpeg: auto (default): JPEG, PNG and WebP files that fit --max-side "
       "stored as given, the rest re-encoded as PNG when the source is lossless (PNG, lossless WebP), else as JPEG; "
       "jpeg: only JPEGs stored as given, the rest re-encoded as JPEG; png: everything re-encoded as PNG")
      ("jpeg-quality", po::value(&jpeg_quality), "jpeg: quality of images re-encoded as JPEG, 1-100 (90)")
      ("image-size", po::value(&image_size), "raw: S: shorter side resized to S, then centre-cropped to S x S (256)")
      ("samples-per-shard", po::value(&samples_per_shard), "samples per shard file (1000)")
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
      ("shuffle-seed", po::value(&shuffle_seed), "shuffle the listed items with this seed before sharding "
                                                 "(training sets listed in a sorted order: the loader's shuffle "
                                                 "buffer only mixes nearby samples); default: input order")
      ("max-items", po::value(&max_items), "use only the first N listed items (testing)")
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

  // ---- output directory: refuse to mix with an earlier run unless told ----
  int previous = 0;
  if (rank == 0) {
    fs::create_directories(output);
    if (has_previous_output(output)) {
      if (!overwrite) previous = 1;
      else remove_previous_output(output);
    }
  }
  MPI_CHECK(MPI_Bcast(&previous, 1, MPI_INT, 0, MPI_COMM_WORLD));
  COCA_CHECK(!previous, output, " already holds shards or an index; pass --overwrite to replace them");
  MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));

  // ---- list the inputs (every rank the same list) ----
  InputListing listing;
  if (format == "csv") {
    CsvOptions co;
    co.separator = csv_sep == "\\t" || csv_sep == "tab" ? '\t' : csv_sep.empty() ? ',' : csv_sep[0];
    co.image_column = csv_img;
    co.caption_column = csv_cap;
    co.images_root = images_root;
    listing = list_csv(input, co);
  } else if (format == "coco") {
    COCA_CHECK(!images_root.empty(), "--format coco needs --images-root (the folder with the images)");
    listing = list_coco(input, images_root);
  } else if (format == "wds") {
    std::vector<std::string> tars{input};
    tars.insert(tars.end(), extra_inputs.begin(), extra_inputs.end());
    listing = list_webdataset(tars);
  } else if (format == "folder") {
    if (!classnames_file.empty()) classnames_file = resolve_bundled_file("classnames", classnames_file, "--classnames");
    if (!class_ids_file.empty()) class_ids_file = resolve_bundled_file("classnames", class_ids_file, "--class-ids");
    listing = list_image_folder(input, classnames_file, class_ids_file);
  } else {
    throw Error(str_cat("unknown --format '", format, "' (csv, coco, wds, folder)"));
  }
  if (shuffle_seed >= 0) {  // Fisher-Yates with our seeded generator: the same order on every platform
    Generator gen(static_cast<uint64_t>(shuffle_seed));
    auto& items = listing.items;
    for (size_t i = items.size(); i > 1; --i) std::swap(items[i - 1], items[gen.below(i)]);
  }
  if (max_items >= 0 && static_cast<int64_t>(listing.items.size()) > max_items) listing.items.resize(max_items);
  const int64_t n_items = static_cast<int64_t>(listing.items.size());
  const int64_t lo = n_items * rank / world, hi = n_items * (rank + 1) / world;
  std::vector<WorkItem> mine(listing.items.begin() + lo, listing.items.begin() + hi);

  // ---- build this rank's shards ----
  BpeTokenizer tokenizer;
  BuildOptions bo;
  bo.out_dir = output;
  bo.layout.image_size = image_size;
  bo.layout.chunk_images = chunk_images;
  bo.layout.compression = parse_compression(compression);
  bo.layout.gzip_level = gzip_level;
  bo.layout.labels = format == "folder";
  bo.layout.classnames = listing.classnames;
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
  bo.progress = !quiet;
  SkipReport report;
  if (rank == 0)
    for (const auto& issue : listing.issues) report.add_listing_issue(issue);
  const auto t0 = std::chrono::steady_clock::now();
  const LocalShards local = build_shards(mine, bo, report);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // ---- merge: global shard numbers in rank order, then the index and the report ----
  nlohmann::json mine_json = {{"counts", local.counts}, {"report", report.to_json()}, {"seconds", seconds}};
  const std::vector<std::string> all = all_gather_strings(mine_json.dump(), world);
  int64_t first = 0;
  ShardIndex index;
  SkipReport merged;
  double max_seconds = 0;
  for (int r = 0; r < world; ++r) {
    const auto j = nlohmann::json::parse(all[static_cast<size_t>(r)]);
    const auto counts = j.at("counts").get<std::vector<int64_t>>();
    if (r < rank) first += static_cast<int64_t>(counts.size());
    for (int64_t c : counts) {
      index.shards.push_back({shard_file_name(static_cast<int64_t>(index.shards.size())), c});
      index.total_samples += c;
    }
    merged.merge(SkipReport::from_json(j.at("report")));
    max_seconds = std::max(max_seconds, j.at("seconds").get<double>());
  }
  publish_shards(output, local.temp_paths, first);
  MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
  if (rank == 0) {
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
    index.source = {{"format", format}, {"path", fs::absolute(input).string()}, {"items", n_items}};
    if (!images_root.empty()) index.source["images_root"] = fs::absolute(images_root).string();
    if (shuffle_seed >= 0) index.source["shuffle_seed"] = shuffle_seed;
    std::string cmd;
    for (int i = 0; i < argc; ++i) {  // shell-quoted where needed, so it can be re-run
      const std::string a = argv[i];
      if (i > 0) cmd += ' ';
      if (!a.empty() && a.find_first_of(" \t'\"$\\;&|<>()*?") == std::string::npos) {
        cmd += a;
      } else {
        cmd += '\'';
        for (char c : a) cmd += c == '\'' ? std::string("'\\''") : std::string(1, c);
        cmd += '\'';
      }
    }
    if (world > 1) cmd = str_cat("mpirun -np ", world, " ", cmd);
    index.command = cmd;
    index.classnames = listing.classnames;
    index.extra = {{"skipped_by_reason", merged.to_json().at("skipped_by_reason")}, {"ranks", world}};
    if (encoded) index.extra["reencode"] = reencode_name(reencode);
    index.save(output);
    nlohmann::json rep = merged.to_json();
    rep["seconds"] = max_seconds;
    rep["images_per_second"] = max_seconds > 0 ? static_cast<double>(n_items) / max_seconds : 0.0;
    rep["shards"] = index.shards.size();
    {
      std::ofstream f(fs::path(output) / "report.json");
      f << rep.dump(2) << "\n";
      COCA_CHECK(f.good(), "writing ", (fs::path(output) / "report.json").string(), " failed");
    }
    std::printf("coca-shard: %zu shards, %lld samples in %s (%.1fs, %.0f images/s)\n", index.shards.size(),
                static_cast<long long>(index.total_samples), output.c_str(), max_seconds,
                max_seconds > 0 ? n_items / max_seconds : 0.0);
    std::printf("%s", merged.summary().c_str());
    std::printf("report: %s\n", (fs::path(output) / "report.json").string().c_str());
  }
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
