#include "coca/train/options.h"

#include "coca/train/openclip_flags.h"

#include <boost/program_options.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <vector>

#include "coca/data/multi_source.h"
#include "coca/data/shard_index.h"
#include "coca/model/config.h"
#include "coca/tensor/error.h"

namespace coca::train {

namespace po = boost::program_options;
namespace fs = std::filesystem;

nlohmann::json TrainOptions::to_json() const {
  return {{"train_data", train_data}, {"train_data_upsampling_factors", train_data_upsampling_factors},
          {"val_data", val_data}, {"val_frequency", val_frequency},
          {"val_num_samples", val_num_samples}, {"zeroshot_data", zeroshot_data}, {"zeroshot_templates", zeroshot_templates},
          {"tokenizer", tokenizer}, {"train_num_samples", train_num_samples},
          {"dataset_resampled", dataset_resampled}, {"aug_scale", aug_scale}, {"workers", workers}, {"model", model},
          {"model_config", model_config}, {"pretrained", pretrained}, {"batch_size", batch_size},
          {"epochs", epochs}, {"max_steps", max_steps}, {"max_minutes", max_minutes}, {"lr", lr},
          {"beta1", beta1}, {"beta2", beta2}, {"eps", eps}, {"wd", wd}, {"warmup", warmup},
          {"lr_scheduler", lr_scheduler}, {"lr_cooldown_end", lr_cooldown_end},
          {"epochs_cooldown", epochs_cooldown}, {"grad_clip_norm", grad_clip_norm}, {"accum_freq", accum_freq},
          {"device", device}, {"precision", precision}, {"seed", seed}, {"coca_caption_loss_weight", coca_caption_loss_weight},
          {"coca_contrastive_loss_weight", coca_contrastive_loss_weight}, {"zero1", zero1},
          {"bucket_mb", bucket_mb}, {"max_nonfinite", max_nonfinite}, {"threads", threads}, {"logs", logs},
          {"name", name}, {"log_every_n_steps", log_every_n_steps}, {"save_frequency", save_frequency},
          {"save_every_n_steps", save_every_n_steps}, {"keep_checkpoints", keep_checkpoints},
          {"continue_on_save_error", continue_on_save_error},
          {"report_to", report_to},
          {"resume", resume}, {"resume_new_data", resume_new_data}, {"zeroshot_frequency", zeroshot_frequency}, {"command_line", command_line},
          {"lock_image", lock_image}, {"lock_image_unlocked_groups", lock_image_unlocked_groups},
          {"lock_text", lock_text}, {"lock_text_unlocked_layers", lock_text_unlocked_layers},
          {"grad_checkpointing", grad_checkpointing}, {"force_patch_dropout", force_patch_dropout},
          {"aug_cfg", aug_cfg}, {"color_jitter", color_jitter}, {"color_jitter_prob", color_jitter_prob},
          {"gray_scale_prob", gray_scale_prob}, {"image_mean", image_mean}, {"image_std", image_std}};
}

namespace {

// Boost parses an unsigned option from "-1" without complaint (as 2^64 - 1): read the digits.
uint64_t parse_seed(const std::string& s) {
  uint64_t v = 0;
  const char *first = s.data(), *last = s.data() + s.size();
  const auto [end, ec] = std::from_chars(first, last, v);
  COCA_CHECK(!s.empty() && ec == std::errc() && end == last, "--seed must be an integer in [0, 2^64 - 1], got '", s,
             "'");
  return v;
}

// --report-to, OpenCLIP's flag: returns whether TensorBoard is among the comma list.
bool parse_report_to(const std::string& list) {
  bool tensorboard = false;
  size_t begin = 0;
  while (begin <= list.size()) {
    size_t end = list.find(',', begin);
    if (end == std::string::npos) end = list.size();
    std::string item = list.substr(begin, end - begin);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    COCA_CHECK(item != "wandb", "--report-to wandb is not supported: coca-train writes metrics.jsonl (always) and "
               "TensorBoard event files (--report-to tensorboard)");
    COCA_CHECK(item.empty() || item == "jsonl" || item == "tensorboard",
               "--report-to takes a comma list of jsonl and tensorboard, got '", item, "' in '", list, "'");
    tensorboard = tensorboard || item == "tensorboard";
    begin = end + 1;
  }
  return tensorboard;
}

// One Python literal of numbers: "(0.08, 1.0)", "[0.08,1.0]", "'(0.4,0.4,0.4,0.1)'", or a
// bare number "0.4" (bracketed = false). A trailing comma is allowed, as in Python.
bool parse_numbers(const std::string& v, std::vector<double>& out, bool& bracketed) {
  std::string s;
  for (char c : v)
    if (c != ' ' && c != '\'' && c != '"') s += c;
  out.clear();
  bracketed = s.size() >= 2 && ((s.front() == '(' && s.back() == ')') || (s.front() == '[' && s.back() == ']'));
  if (bracketed) {
    s = s.substr(1, s.size() - 2);
    if (!s.empty() && s.back() == ',') s.pop_back();
  }
  if (s.empty()) return false;
  size_t begin = 0;
  while (begin <= s.size()) {
    size_t end = s.find(',', begin);
    if (end == std::string::npos) end = s.size();
    const std::string item = s.substr(begin, end - begin);
    try {
      size_t used = 0;
      const double x = std::stod(item, &used);
      if (used != item.size() || !std::isfinite(x)) return false;
      out.push_back(x);
    } catch (const std::exception&) {
      return false;
    }
    begin = end + 1;
  }
  return bracketed || out.size() == 1;
}

bool parse_pair(const std::string& v, double& lo, double& hi) {
  std::vector<double> x;
  bool bracketed = false;
  if (!parse_numbers(v, x, bracketed) || !bracketed || x.size() != 2) return false;
  lo = x[0], hi = x[1];
  return true;
}

bool parse_probability(const std::string& v, double& p) {
  std::vector<double> x;
  bool bracketed = false;
  if (!parse_numbers(v, x, bracketed) || bracketed) return false;
  p = x[0];
  return p >= 0 && p <= 1;
}

std::string unquote(std::string v) {
  if (v.size() >= 2 && (v.front() == '\'' || v.front() == '"') && v.back() == v.front()) v = v.substr(1, v.size() - 2);
  return v;
}

// OpenCLIP's --aug-cfg: key=value words, each value a Python literal.
void parse_aug_cfg(TrainOptions& o) {
  bool jitter_given = false, prob_given = false;
  for (const std::string& word : o.aug_cfg) {
    const size_t eq = word.find('=');
    COCA_CHECK(eq != std::string::npos && eq > 0, "--aug-cfg: '", word, "' is not key=value");
    const std::string key = word.substr(0, eq), value = word.substr(eq + 1);
    if (key == "scale") {
      COCA_CHECK(parse_pair(value, o.aug_scale_min, o.aug_scale_max) && o.aug_scale_min > 0 &&
                     o.aug_scale_min <= o.aug_scale_max && o.aug_scale_max <= 1,
                 "--aug-cfg scale must be (LO,HI) with 0 < LO <= HI <= 1, got '", value, "'");
      o.aug_scale = str_cat(o.aug_scale_min, ",", o.aug_scale_max);
    } else if (key == "ratio") {
      COCA_CHECK(parse_pair(value, o.aug_ratio_min, o.aug_ratio_max) && o.aug_ratio_min > 0 &&
                     o.aug_ratio_min <= o.aug_ratio_max,
                 "--aug-cfg ratio must be (LO,HI) with 0 < LO <= HI, got '", value, "'");
    } else if (key == "interpolation") {
      o.interpolation = unquote(value);
      COCA_CHECK(o.interpolation == "bilinear" || o.interpolation == "bicubic",
                 "--aug-cfg interpolation must be bilinear or bicubic, got '", value, "'");
    } else if (key == "color_jitter") {
      // OpenCLIP's own transform takes exactly four values; one number (or three) is a form
      // only its timm path accepts.
      std::vector<double> x;
      bool bracketed = false;
      COCA_CHECK(parse_numbers(value, x, bracketed) && bracketed && x.size() == 4,
                 "--aug-cfg color_jitter must be four numbers (B,C,S,H) for brightness, contrast, saturation "
                 "and hue, got '", value, "'");
      COCA_CHECK(x[0] >= 0 && x[1] >= 0 && x[2] >= 0 && x[3] >= 0 && x[3] <= 0.5,
                 "--aug-cfg color_jitter (B,C,S,H) needs B, C, S >= 0 and 0 <= H <= 0.5, got '", value, "'");
      std::copy(x.begin(), x.end(), o.color_jitter.begin());
      jitter_given = true;
    } else if (key == "color_jitter_prob") {
      COCA_CHECK(parse_probability(value, o.color_jitter_prob),
                 "--aug-cfg color_jitter_prob must be a probability in [0, 1], got '", value, "'");
      prob_given = true;
    } else if (key == "gray_scale_prob") {
      COCA_CHECK(parse_probability(value, o.gray_scale_prob),
                 "--aug-cfg gray_scale_prob must be a probability in [0, 1], got '", value, "'");
    } else {
      throw Error(str_cat("--aug-cfg: key '", key,
                          "' is not supported (supported: scale, ratio, interpolation, color_jitter, "
                          "color_jitter_prob, gray_scale_prob)"));
    }
  }
  // OpenCLIP fails on color_jitter_prob without color_jitter, and silently applies no jitter
  // for color_jitter without color_jitter_prob: both are refused here.
  COCA_CHECK(!(prob_given && o.color_jitter_prob > 0) || jitter_given,
             "--aug-cfg color_jitter_prob needs color_jitter=(B,C,S,H)");
  COCA_CHECK(!jitter_given || prob_given,
             "--aug-cfg color_jitter needs color_jitter_prob=P (the probability of jittering a sample; without it "
             "OpenCLIP applies no jitter)");
}

}  // namespace

bool parse_train_options(int argc, char** argv, TrainOptions& o) {
  std::string seed = "0";
  po::options_description data("Data");
  data.add_options()("train-data", po::value(&o.train_data), "training shard directory (holds index.json), or several "
                     "joined by '::' (A::B: read as one set; each source's samples are counted in the log and metrics)")(
      "train-data-upsampling-factors", po::value(&o.train_data_upsampling_factors),
      "with several --train-data sources and --dataset-resampled: each source's weight, '::'-separated (1::4: a shard "
      "of B is drawn 4 times as often as one of A); default: every shard alike")(
      "val-data", po::value(&o.val_data),
      "captioned shard directory (as --train-data) for validation: loss and image<->text retrieval R@1/5/10")(
      "val-frequency", po::value(&o.val_frequency)->default_value(1),
      "validate on --val-data every N epochs and at the end of training (0: only at the end)")(
      "val-num-samples", po::value(&o.val_num_samples)->default_value(0),
      "validate on the first N samples of --val-data (0: all)")(
      "zeroshot-data", po::value(&o.zeroshot_data),
      "classification shard directory (coca-shard --format folder) for zero-shot evaluation at the end of training and "
      "every --zeroshot-frequency epochs")(
      "zeroshot-templates", po::value(&o.zeroshot_templates), "prompt templates, one per line, '{}' = class name")(
      "tokenizer", po::value(&o.tokenizer), "BPE merges file (default: the one named by the training index); tokenizes the captions of shards stored without tokens")(
      "train-num-samples", po::value(&o.train_num_samples), "samples per epoch over all ranks (default: all); without --dataset-resampled an epoch can "
      "only be shortened, since no sample repeats within one")(
      "dataset-resampled", po::bool_switch(&o.dataset_resampled), "draw shards with replacement, endlessly")(
      "workers", po::value(&o.workers)->default_value(2), "decode/augment threads per rank")(
      "skip-bad-shards", po::bool_switch(&o.skip_bad_shards), "warn and skip unreadable shards instead of failing")(
      "aug-scale", po::value(&o.aug_scale)->default_value("0.9,1.0"),
      "random-resized-crop area fraction LO,HI (OpenCLIP's --aug-cfg scale)")(
      "aug-cfg", po::value(&o.aug_cfg)->multitoken(),
      "OpenCLIP's augmentation settings, key=value words: scale=(LO,HI) (sets --aug-scale), ratio=(LO,HI) "
      "(crop aspect ratio range, default (0.75,1.333)), interpolation=bilinear|bicubic (default bilinear), "
      "color_jitter=(B,C,S,H) with color_jitter_prob=P (with probability P per sample, torchvision's ColorJitter "
      "after the crop: brightness, contrast and saturation factors from [max(0,1-B),1+B] etc., a hue shift from "
      "[-H,H] with H <= 0.5, applied in a random order), gray_scale_prob=P (with probability P the image becomes "
      "grey, after the jitter); values as Python literals, quoted or not; other keys (re_prob, use_timm, ...) are "
      "refused")(
      "image-mean", po::value(&o.image_mean)->multitoken(),
      "R,G,B normalisation mean for training and zero-shot images (default: the model config's "
      "preprocess_cfg, else CLIP's); saved in the checkpoint's model_config")(
      "image-std", po::value(&o.image_std)->multitoken(), "R,G,B normalisation std (as --image-mean)");
  po::options_description model("Model");
  model.add_options()("model", po::value(&o.model)->default_value("coca_tiny"), "config name in launch/configs/")(
      "model-config", po::value(&o.model_config), "model config JSON file (overrides --model)")(
      "pretrained", po::value(&o.pretrained),
      "initial weights with OpenCLIP names: .safetensors, or PyTorch's .bin (a state dict) or .pt (a training "
      "checkpoint; its state_dict is used), told apart by content");
  po::options_description tune("Fine-tuning");
  tune.add_options()("lock-image", po::bool_switch(&o.lock_image),
                     "freeze the image tower (visual.*): no gradient, optimizer state or all-reduce for it")(
      "lock-image-unlocked-groups", po::value(&o.lock_image_unlocked_groups)->default_value(0),
      "with --lock-image, leave the last N of its L+2 layer groups trainable (OpenCLIP's grouping): "
      "[conv1, class/positional embedding, ln_pre], resblocks 0..L-2 one each, [resblock L-1, ln_post], "
      "[proj]; attn_pool stays frozen")(
      "lock-image-freeze-bn-stats", po::bool_switch(&o.lock_image_freeze_bn_stats),
      "accepted for OpenCLIP command lines; no effect (the ViT has no batch norm)")(
      "lock-text", po::bool_switch(&o.lock_text),
      "freeze the text tower (text.*: embeddings, transformer, ln_final, text_projection, cls_emb); the "
      "multimodal decoder and logit_scale stay trainable")(
      "lock-text-unlocked-layers", po::value(&o.lock_text_unlocked_layers)->default_value(0),
      "with --lock-text, leave the last N of its L+2 layer groups trainable (OpenCLIP's grouping): "
      "[token/positional embedding], resblocks 0..L-2 one each, [resblock L-1, ln_final], [text_projection]; "
      "cls_emb stays frozen")(
      "lock-text-freeze-layer-norm", po::bool_switch(&o.lock_text_freeze_layer_norm),
      "accepted for OpenCLIP command lines; no effect (as for OpenCLIP's own text tower)")(
      "grad-checkpointing", po::bool_switch(&o.grad_checkpointing),
      "recompute each residual block (image, text, decoder) in backward instead of keeping its activations: "
      "less memory, about one more forward of compute, identical gradients")(
      "force-patch-dropout", po::value(&o.force_patch_dropout),
      "share P in [0, 1) of image patch tokens dropped in training (FLIP; each sample keeps max(1, "
      "int(patches * (1 - P))) random patches and the class token); overrides the model config's "
      "vision_cfg.patch_dropout; never applied in evaluation");
  po::options_description optim("Optimisation");
  optim.add_options()("batch-size", po::value(&o.batch_size)->default_value(64), "samples per rank per micro-batch")(
      "epochs", po::value(&o.epochs)->default_value(1), "passes over the data")(
      "max-steps", po::value(&o.max_steps)->default_value(0), "stop after this many optimizer steps; the lr schedule ends there too (0: no limit)")(
      "max-minutes", po::value(&o.max_minutes)->default_value(0), "time budget: after the warmup the measured step time sets the step count, so the lr schedule "
      "ends when the time does; the run stops and saves at the limit in any case (0: no limit)")(
      "lr", po::value(&o.lr)->default_value(5e-4), "peak learning rate")(
      "beta1", po::value(&o.beta1)->default_value(0.9), "AdamW beta1")(
      "beta2", po::value(&o.beta2)->default_value(0.98), "AdamW beta2")(
      "eps", po::value(&o.eps)->default_value(1e-6), "AdamW epsilon")(
      "wd", po::value(&o.wd)->default_value(0.2), "decoupled weight decay")(
      "warmup", po::value(&o.warmup)->default_value(100), "linear warmup steps")(
      "lr-scheduler", po::value(&o.lr_scheduler)->default_value("cosine"), "cosine, const or const-cooldown")(
      "lr-cooldown-end", po::value(&o.lr_cooldown_end)->default_value(0.0), "final lr of const-cooldown")(
      "epochs-cooldown", po::value(&o.epochs_cooldown)->default_value(0), "cooldown epochs of const-cooldown")(
      "grad-clip-norm", po::value(&o.grad_clip_norm)->default_value(0.0), "global gradient-norm clip (0: off)")(
      "accum-freq", po::value(&o.accum_freq)->default_value(1),
      "micro-batches per optimizer step, with OpenCLIP's meaning: the features of all of them are computed first "
      "and each micro-batch is then recomputed with gradient against all of them, so the step trains the "
      "objective of one batch of accum-freq x batch-size per rank (the contrastive negatives span all "
      "accum-freq x W x batch-size samples) with the memory of one micro-batch plus the features")(
      "device", po::value(&o.device)->default_value("auto"),
      "cpu, cuda (GPU <local rank>, NCCL between ranks) or auto (cuda when built with it and a GPU is there)")(
      "precision", po::value(&o.precision)->default_value("auto"),
      "auto (amp_bf16 on cuda, fp32 on cpu), fp32 (no TF32), tf32, or amp_bf16 (bf16 matmul operands, "
      "float32 accumulation, weights, optimizer state, softmax, norms and losses)")(
      "seed", po::value(&seed)->default_value("0"), "seed for initialisation and data order")(
      "coca-caption-loss-weight", po::value(&o.coca_caption_loss_weight)->default_value(2.0), "caption loss weight")(
      "coca-contrastive-loss-weight", po::value(&o.coca_contrastive_loss_weight)->default_value(1.0),
      "contrastive loss weight")("zero1", po::bool_switch(&o.zero1),
                                     "shard AdamW state across ranks (ZeRO-1, CPU); checkpoints keep the full state "
                                     "and resume with or without it")(
      "bucket-mb", po::value(&o.bucket_mb)->default_value(25.0), "gradient all-reduce bucket size")(
      "max-nonfinite", po::value(&o.max_nonfinite)->default_value(5), "stop after this many non-finite steps in a row")(
      "threads", po::value(&o.threads)->default_value(0), "compute threads per rank (0: cores / ranks on the host)");
  po::options_description logging("Logging and checkpoints");
  logging.add_options()("logs", po::value(&o.logs)->default_value("./logs"), "where runs are written")(
      "name", po::value(&o.name), "run name: <logs>/<name>/ (default: model-lr-batch-date)")(
      "log-every-n-steps", po::value(&o.log_every_n_steps)->default_value(10), "progress/metrics interval")(
      "report-to", po::value(&o.report_to)->default_value("jsonl"),
      "where metrics go, a comma list: jsonl (<logs>/<name>/metrics.jsonl, always written) and tensorboard "
      "(event files in <logs>/<name>/tensorboard/, for tensorboard --logdir)")(
      "save-frequency", po::value(&o.save_frequency)->default_value(1), "checkpoint every N epochs (0: never)")(
      "save-every-n-steps", po::value(&o.save_every_n_steps)->default_value(0), "also checkpoint every N steps")(
      "keep-checkpoints", po::value(&o.keep_checkpoints)->default_value(3), "keep the last K checkpoints")(
      "resume", po::value(&o.resume),
      "checkpoint directory, or 'latest' for this run's newest; the data (index.json), --seed, --accum-freq, "
      "--dataset-resampled, --train-num-samples and the tokenizer must be the checkpoint's")(
      "resume-new-data", po::bool_switch(&o.resume_new_data),
      "with --resume, when the data or those settings changed on purpose: take the checkpoint's weights, optimizer "
      "and step, and start the current epoch afresh over the data as given now")(
      "continue-on-save-error", po::bool_switch(&o.continue_on_save_error),
      "a checkpoint save that fails (e.g. disk full) logs a warning and training goes on; default: stop with an "
      "error")(
      "zeroshot-frequency", po::value(&o.zeroshot_frequency)->default_value(0),
      "zero-shot eval on --zeroshot-data every N epochs (0: only at the end)")(
      "debug-nonfinite-step", po::value(&o.debug_nonfinite_step)->default_value(-1), "(tests) poison this step")(
      "debug-step-seconds", po::value(&o.debug_step_seconds)->default_value(0),
      "(tests) plan --max-minutes with this step time instead of the measured one");
  po::options_description generic("General");
  std::string config_file;
  generic.add_options()("help,h", "print this help")("config", po::value(&config_file),
                                                     "file of 'key = value' lines with the same keys");
  po::options_description all;
  all.add(generic).add(data).add(model).add(tune).add(optim).add(logging);
  po::options_description openclip;  // not in --help: OpenCLIP's other flags (openclip_flags.h)
  add_openclip_flags(openclip);
  po::options_description accepted;
  accepted.add(all).add(openclip);

  po::variables_map vm;
  po::store(po::command_line_parser(argc, argv).options(accepted).run(), vm);
  if (vm.count("help")) {
    std::cout << "usage: mpirun -np N coca-train --train-data DIR [options]\n\n"
                 "Pretrains CoCa on HDF5 shards (see data_tools/README.md). Every rank reads its own\n"
                 "shards; the contrastive loss sees the global batch.\n"
              << all
              << "\nEvery other flag of OpenCLIP's trainer is accepted too: the ones that describe what coca-train\n"
                 "does anyway silently, the ones that mean nothing here with a line saying why, and the ones that\n"
                 "would change what is trained (--siglip, --distill-model, NaFlex, layer-wise lr decay, fp16)\n"
                 "are refused with the nearest supported choice.\n";
    return false;
  }
  if (vm.count("config")) {
    std::ifstream in(vm["config"].as<std::string>());
    COCA_CHECK(in.good(), "--config: cannot open ", vm["config"].as<std::string>());
    po::store(po::parse_config_file(in, accepted), vm);
  }
  po::notify(vm);
  apply_openclip_flags(vm, o);
  if (std::string line = openclip_default_differences(vm); !line.empty()) o.notes.push_back(line);
  for (int i = 0; i < argc; ++i) o.command_line += (i ? " " : "") + std::string(argv[i]);

  COCA_CHECK(!o.train_data.empty(), "--train-data is required (a shard directory made by coca-shard)");
  const std::vector<std::string> sources = split_sources(o.train_data);
  for (const std::string& dir : sources)
    COCA_CHECK(fs::is_regular_file(fs::path(dir) / "index.json"), "--train-data ", dir,
               ": no index.json there (make shards with data_tools/coca-shard)");
  if (!o.train_data_upsampling_factors.empty()) {
    (void)parse_upsampling_factors(o.train_data_upsampling_factors, sources.size(), "--train-data-upsampling-factors");
    COCA_CHECK(o.dataset_resampled, "--train-data-upsampling-factors weigh resampled draws: add --dataset-resampled "
               "(without it an epoch reads every source once)");
  }
  if (!o.val_data.empty()) {
    COCA_CHECK(fs::is_regular_file(fs::path(o.val_data) / "index.json"), "--val-data ", o.val_data,
               ": no index.json there");
    const ShardIndex val = ShardIndex::load(o.val_data);
    COCA_CHECK(!val.has_labels(), "--val-data ", o.val_data, " is a classification set (labels, ",
               val.classnames.size(), " classes); zero-shot evaluation moved to --zeroshot-data ", o.val_data);
  }
  if (!o.zeroshot_data.empty()) {
    COCA_CHECK(fs::is_regular_file(fs::path(o.zeroshot_data) / "index.json"), "--zeroshot-data ", o.zeroshot_data,
               ": no index.json there");
    COCA_CHECK(ShardIndex::load(o.zeroshot_data).has_labels(), "--zeroshot-data ", o.zeroshot_data,
               " is not a classification set (its index.json has no classnames); captioned validation is --val-data");
  }
  COCA_CHECK(o.batch_size > 0, "--batch-size must be positive, got ", o.batch_size);
  COCA_CHECK(o.epochs > 0, "--epochs must be positive, got ", o.epochs);
  COCA_CHECK(o.accum_freq > 0, "--accum-freq must be positive, got ", o.accum_freq);
  COCA_CHECK(std::isfinite(o.lr) && o.lr >= 0, "--lr must be >= 0, got ", o.lr);
  COCA_CHECK(std::isfinite(o.wd) && o.wd >= 0, "--wd must be >= 0, got ", o.wd);
  COCA_CHECK(std::isfinite(o.eps) && o.eps > 0, "--eps must be > 0, got ", o.eps);
  COCA_CHECK(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1,
             "--beta1 and --beta2 must be in [0, 1), got ", o.beta1, " and ", o.beta2);
  o.seed = parse_seed(seed);
  // Values that parse but mean nothing (a negative count, NaN) are refused here, not
  // discovered as odd behaviour hours later.
  COCA_CHECK(o.warmup >= 0, "--warmup must be >= 0, got ", o.warmup);
  COCA_CHECK(o.max_steps >= 0, "--max-steps must be >= 0 (0: no limit), got ", o.max_steps);
  COCA_CHECK(!o.resume_new_data || !o.resume.empty(), "--resume-new-data goes with --resume (it says how to resume)");
  COCA_CHECK(std::isfinite(o.max_minutes) && o.max_minutes >= 0, "--max-minutes must be >= 0 (0: no limit), got ",
             o.max_minutes);
  COCA_CHECK(o.train_num_samples >= 0, "--train-num-samples must be >= 0 (0: the shard index's count), got ",
             o.train_num_samples);
  COCA_CHECK(o.save_frequency >= 0, "--save-frequency must be >= 0 (0: never), got ", o.save_frequency);
  COCA_CHECK(o.save_every_n_steps >= 0, "--save-every-n-steps must be >= 0 (0: off), got ", o.save_every_n_steps);
  COCA_CHECK(o.zeroshot_frequency >= 0, "--zeroshot-frequency must be >= 0 (0: off), got ", o.zeroshot_frequency);
  COCA_CHECK(o.val_frequency >= 0, "--val-frequency must be >= 0 (0: only at the end), got ", o.val_frequency);
  COCA_CHECK(o.val_num_samples >= 0, "--val-num-samples must be >= 0 (0: all), got ", o.val_num_samples);
  COCA_CHECK(o.threads >= 0, "--threads must be >= 0 (0: cores / ranks on the host), got ", o.threads);
  COCA_CHECK(o.max_nonfinite >= 1, "--max-nonfinite must be >= 1, got ", o.max_nonfinite);
  COCA_CHECK(std::isfinite(o.grad_clip_norm) && o.grad_clip_norm >= 0, "--grad-clip-norm must be >= 0 (0: off), got ",
             o.grad_clip_norm);
  COCA_CHECK(o.epochs_cooldown >= 0 && o.epochs_cooldown <= o.epochs,
             "--epochs-cooldown must be between 0 and --epochs (", o.epochs, "), got ", o.epochs_cooldown);
  COCA_CHECK(std::isfinite(o.lr_cooldown_end) && o.lr_cooldown_end >= 0, "--lr-cooldown-end must be >= 0, got ",
             o.lr_cooldown_end);
  COCA_CHECK(std::isfinite(o.coca_caption_loss_weight) && o.coca_caption_loss_weight >= 0 &&
                 std::isfinite(o.coca_contrastive_loss_weight) && o.coca_contrastive_loss_weight >= 0 &&
                 o.coca_caption_loss_weight + o.coca_contrastive_loss_weight > 0,
             "--coca-caption-loss-weight and --coca-contrastive-loss-weight must be >= 0 and not both 0, got ",
             o.coca_caption_loss_weight, " and ", o.coca_contrastive_loss_weight);
  COCA_CHECK(o.lr_scheduler == "cosine" || o.lr_scheduler == "const" || o.lr_scheduler == "const-cooldown",
             "--lr-scheduler must be cosine, const or const-cooldown, got '", o.lr_scheduler, "'");
  COCA_CHECK(o.device == "auto" || o.device == "cpu" || o.device == "cuda", "--device must be auto, cpu or cuda, got '",
             o.device, "'");
  COCA_CHECK(o.precision == "auto" || o.precision == "fp32" || o.precision == "tf32" || o.precision == "amp_bf16",
             "--precision must be auto, fp32, tf32 or amp_bf16, got '", o.precision, "'");
  COCA_CHECK(o.device != "cpu" || o.precision == "auto" || o.precision == "fp32", "--precision ", o.precision,
             " needs --device cuda; CPU training runs in fp32");
  {
    const auto comma = o.aug_scale.find(',');
    bool ok = comma != std::string::npos;
    try {
      if (ok) {
        size_t used = 0;
        o.aug_scale_min = std::stod(o.aug_scale.substr(0, comma), &used);
        ok = used == comma;
        const std::string hi = o.aug_scale.substr(comma + 1);
        o.aug_scale_max = std::stod(hi, &used);
        ok = ok && used == hi.size();
      }
    } catch (const std::exception&) {
      ok = false;
    }
    COCA_CHECK(ok && o.aug_scale_min > 0 && o.aug_scale_min <= o.aug_scale_max && o.aug_scale_max <= 1,
               "--aug-scale must be LO,HI with 0 < LO <= HI <= 1, got '", o.aug_scale, "'");
  }
  if (!o.aug_cfg.empty()) parse_aug_cfg(o);
  COCA_CHECK(o.lock_image || o.lock_image_unlocked_groups == 0, "--lock-image-unlocked-groups needs --lock-image");
  COCA_CHECK(o.lock_text || o.lock_text_unlocked_layers == 0, "--lock-text-unlocked-layers needs --lock-text");
  COCA_CHECK(o.lock_image_unlocked_groups >= 0, "--lock-image-unlocked-groups must be >= 0, got ",
             o.lock_image_unlocked_groups);
  COCA_CHECK(o.lock_text_unlocked_layers >= 0, "--lock-text-unlocked-layers must be >= 0, got ",
             o.lock_text_unlocked_layers);
  if (vm.count("force-patch-dropout"))
    COCA_CHECK(std::isfinite(o.force_patch_dropout) && o.force_patch_dropout >= 0 && o.force_patch_dropout < 1,
               "--force-patch-dropout must be in [0, 1), got ", o.force_patch_dropout);
  else
    o.force_patch_dropout = -1;
  auto join = [](const std::vector<std::string>& words) {
    std::string s;
    for (const auto& w : words) s += (s.empty() ? "" : " ") + w;
    return s;
  };
  if (!o.image_mean.empty()) parse_rgb_triple(join(o.image_mean), "--image-mean", false);
  if (!o.image_std.empty()) parse_rgb_triple(join(o.image_std), "--image-std", true);
  COCA_CHECK(o.workers > 0, "--workers must be positive, got ", o.workers);
  COCA_CHECK(o.log_every_n_steps > 0, "--log-every-n-steps must be positive, got ", o.log_every_n_steps);
  o.report_tensorboard = parse_report_to(o.report_to);
  COCA_CHECK(o.keep_checkpoints > 0, "--keep-checkpoints must be positive, got ", o.keep_checkpoints);
  COCA_CHECK(o.zeroshot_frequency == 0 || !o.zeroshot_data.empty(), "--zeroshot-frequency needs --zeroshot-data");
  COCA_CHECK(std::isfinite(o.bucket_mb) && o.bucket_mb > 0, "--bucket-mb must be positive, got ", o.bucket_mb);
  if (!o.model_config.empty())
    COCA_CHECK(fs::is_regular_file(o.model_config), "--model-config ", o.model_config, ": no such file");
  else
    find_model_config(o.model);  // throws naming the model
  if (!o.pretrained.empty())
    COCA_CHECK(fs::is_regular_file(o.pretrained), "--pretrained ", o.pretrained, ": no such file");
  if (!o.zeroshot_templates.empty())
    COCA_CHECK(fs::is_regular_file(o.zeroshot_templates), "--zeroshot-templates ", o.zeroshot_templates,
               ": no such file");
  return true;
}

}  // namespace coca::train
