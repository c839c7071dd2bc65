#pragma once
// coca-train's options, spelled as OpenCLIP's trainer spells them where one exists.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace coca::train {

struct TrainOptions {
  // data
  std::string train_data;          // shard set directory (index.json), or several as 'A::B'
  std::string train_data_upsampling_factors;  // '1::4': resampled weight of each --train-data source
  std::string val_data;            // captioned shard set: validation loss and retrieval
  std::string zeroshot_data;       // classification shard set for zero-shot evaluation
  int val_frequency = 1;           // validate every N epochs and at the end (0: only at the end)
  int64_t val_num_samples = 0;     // validate on the first N samples of --val-data (0: all)
  std::string zeroshot_templates;  // prompt templates file ('{}' marks the class name)
  std::string tokenizer;           // BPE merges file for class names (default: <train-data>/bpe.txt.gz)
  int64_t train_num_samples = 0;   // samples per epoch over all ranks (0: the shard index)
  bool dataset_resampled = false;
  int workers = 2;
  bool skip_bad_shards = false;
  std::string aug_scale = "0.9,1.0";  // random-resized-crop area fraction LO,HI (OpenCLIP's aug-cfg scale)
  double aug_scale_min = 0.9, aug_scale_max = 1.0;  // parsed from aug_scale
  std::vector<std::string> aug_cfg;  // OpenCLIP's --aug-cfg key=value words (see parse_aug_cfg)
  double aug_ratio_min = 3.0 / 4.0, aug_ratio_max = 4.0 / 3.0;  // parsed from aug_cfg
  std::string interpolation = "bilinear";                      // aug_cfg interpolation=
  // aug_cfg color_jitter=(B,C,S,H) with color_jitter_prob=P, and gray_scale_prob=P: OpenCLIP's
  // colour augmentation after the crop (coca/data/color_jitter.h); probabilities 0: off.
  std::array<double, 4> color_jitter{0, 0, 0, 0};
  double color_jitter_prob = 0, gray_scale_prob = 0;
  std::vector<std::string> image_mean, image_std;  // --image-mean / --image-std words ("R,G,B" or R G B)
  // model
  std::string model = "coca_tiny";
  std::string model_config;
  std::string pretrained;          // initial weights (safetensors)
  // fine-tuning (OpenCLIP's flags)
  bool lock_image = false, lock_text = false;
  int64_t lock_image_unlocked_groups = 0, lock_text_unlocked_layers = 0;
  bool lock_image_freeze_bn_stats = false, lock_text_freeze_layer_norm = false;  // accepted, no effect here
  bool grad_checkpointing = false;
  double force_patch_dropout = -1;  // < 0: the model config's vision_cfg.patch_dropout
  // optimisation
  int batch_size = 64;             // per rank
  int epochs = 1;
  int64_t max_steps = 0;           // stop after this many optimizer steps (0: epochs decide)
  double max_minutes = 0;          // stop (and save) after this much wall time (0: no limit)
  double lr = 5e-4, beta1 = 0.9, beta2 = 0.98, eps = 1e-6, wd = 0.2;
  int64_t warmup = 100;
  std::string lr_scheduler = "cosine";
  double lr_cooldown_end = 0.0;
  int epochs_cooldown = 0;
  double grad_clip_norm = 0.0;     // 0: off
  int accum_freq = 1;
  std::string device = "auto";     // auto, cpu or cuda
  std::string precision = "auto";  // auto (amp_bf16 on cuda, fp32 on cpu), fp32, tf32, amp_bf16
  uint64_t seed = 0;
  double coca_caption_loss_weight = 2.0;
  double coca_contrastive_loss_weight = 1.0;
  bool zero1 = false;
  double bucket_mb = 25.0;
  int max_nonfinite = 5;           // consecutive skipped steps before the run stops
  int threads = 0;                 // OpenMP threads per rank (0: cores / local ranks)
  // logging and checkpoints
  std::string logs = "./logs";
  std::string name;                // run name (default: derived from model, lr, batch)
  int log_every_n_steps = 10;
  std::string report_to = "jsonl";  // comma list: jsonl (metrics.jsonl, always written), tensorboard
  bool report_tensorboard = false;  // parsed from report_to
  int save_frequency = 1;          // epochs
  int64_t save_every_n_steps = 0;
  int keep_checkpoints = 3;
  bool continue_on_save_error = false;  // a failed save warns and training goes on
  std::string resume;              // checkpoint directory or "latest"
  // Resume although the data or the data-order settings differ from the checkpoint's: its
  // weights, optimizer and step, with the current epoch started afresh over the data as now.
  bool resume_new_data = false;
  int zeroshot_frequency = 0;      // epochs
  int64_t debug_nonfinite_step = -1;  // tests: make this step's loss NaN
  double debug_step_seconds = 0;      // tests: the step time --max-minutes plans with (0: measured)

  std::string command_line;        // as invoked, for state.json
  // Lines the lead rank prints at start: OpenCLIP flags ignored (and why), and the defaults
  // that differ from OpenCLIP's and were not set (openclip_flags.h).
  std::vector<std::string> notes;
  nlohmann::json to_json() const;
};

// Parses argv (and --config FILE, holding the same keys as `key = value` lines). Prints help
// and returns false for --help. Throws coca::Error with one clear line for anything invalid,
// before any work starts.
bool parse_train_options(int argc, char** argv, TrainOptions& out);

}  // namespace coca::train
