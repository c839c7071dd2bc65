// coca-train's loop, in phases: setup (device, model, data, optimiser), resume, the plan, the
// step, logging, saving. One process per rank; every rank runs the same number of steps (the
// loader is lockstep and the plan comes from the loader's own batch count), issues the same
// collectives in the same order, and agrees on every decision (skip a non-finite step, stop,
// save, a failed save) through an all-reduce.
#include "coca/train/trainer.h"

#include <omp.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <thread>

#include "coca/data/loader.h"
#include "coca/data/multi_source.h"
#include "coca/data/sha256.h"
#include "coca/data/shard_index.h"
#include "coca/dist/autograd.h"
#include "coca/dist/bucketer.h"
#include "coca/dist/device.h"
#include "coca/dist/link_check.h"
#include "coca/dist/mpi.h"
#include "coca/dist/nccl.h"
#include "coca/dist/zero.h"
#include "coca/eval/common.h"
#include "coca/eval/validation.h"
#include "coca/eval/zeroshot.h"
#include "coca/kernels/cpu/blas_select.h"
#include "coca/kernels/cuda/runtime.h"
#include "coca/loss/coca_loss.h"
#include "coca/model/finetune.h"
#include "coca/model/flops.h"
#include "coca/model/weights.h"
#include "coca/train/accumulate.h"
#include "coca/train/checkpoint.h"
#include "coca/train/plan.h"
#include "coca/train/run_log.h"
#include "coca/train/tensorboard.h"

namespace coca::train {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

volatile std::sig_atomic_t g_stop_signal = 0;
volatile std::sig_atomic_t g_interrupts = 0;

extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }
extern "C" void on_interrupt(int) {
  g_interrupts = g_interrupts + 1;
  if (g_interrupts >= 2) std::_Exit(130);  // a second Ctrl-C exits at once
  g_stop_signal = SIGINT;
}

void install_signal_handlers() {
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGUSR1, on_stop_signal);
  std::signal(SIGINT, on_interrupt);
}

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string broadcast_string(dist::MpiCommunicator& comm, std::string s) {
  int64_t n = static_cast<int64_t>(s.size());
  comm.broadcast_bytes(&n, sizeof n, 0);
  s.resize(n);
  if (n) comm.broadcast_bytes(s.data(), n, 0);
  return s;
}

std::string default_run_name(const TrainOptions& o, const std::string& model) {
  char date[32];
  std::time_t t = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y_%m_%d-%H_%M_%S", std::localtime(&t));
  return str_cat(date, "-model_", model, "-lr_", o.lr, "-b_", o.batch_size);
}

// Suspends the gradient-bucketing hooks during the micro-batches whose gradients only
// accumulate locally (all but the last of --accum-freq).
class SuspendHooks {
 public:
  SuspendHooks(const std::vector<Tensor>& params, bool active) : params_(params), active_(active) {
    if (!active_) return;
    for (const Tensor& p : params_) saved_.push_back(std::move(p.impl().post_accumulate_hook));
    for (const Tensor& p : params_) p.impl().post_accumulate_hook = nullptr;
  }
  ~SuspendHooks() {
    if (!active_) return;
    for (size_t i = 0; i < params_.size(); ++i) params_[i].impl().post_accumulate_hook = std::move(saved_[i]);
  }

 private:
  const std::vector<Tensor>& params_;
  bool active_;
  std::vector<std::function<void(TensorImpl&)>> saved_;
};

struct StepResult {
  double loss = 0, contrastive = 0, caption = 0, grad_norm = 0;
  bool finite = true;
};

class Trainer {
 public:
  explicit Trainer(TrainOptions o) : o_(std::move(o)) {}
  int run();

 private:
  // setup
  void setup_device();
  void setup_model();
  void setup_run_dir();
  void setup_data();
  void setup_optimizer();
  void check_eval_tokenizer();
  // resume and plan
  void resume();
  // Built once in setup_data, from the index and tokenizer the loader uses.
  nlohmann::json make_resume_check(const std::string& tokenizer_path) const;
  nlohmann::json resume_check_;
  bool resume_check_differs(const nlohmann::json& st, const std::string& dir) const;
  void replan();
  void plan_for_time();
  // the loop
  StepResult train_step(double lr);
  void log_progress(const StepResult& r, double lr, bool last);
  bool save(const char* why, bool fatal);
  void evaluate();
  void validate();

  TrainOptions o_;
  std::shared_ptr<dist::MpiCommunicator> comm_;
  std::shared_ptr<dist::Communicator> tensor_comm_;
  int rank_ = 0, world_ = 1, threads_ = 1;
  bool lead_ = true;
  Device dev_ = Device::CPU;
  std::string precision_;

  CocaConfig cfg_;
  std::unique_ptr<CoCa> model_;
  std::vector<std::pair<std::string, Tensor>> named_;  // the trainable parameters (not --lock-*'ed)
  std::vector<Tensor> params_;
  Generator patch_gen_;  // patch dropout, reseeded from (seed, step, micro-batch, rank)
  fs::path run_dir_, ckpt_dir_;
  std::unique_ptr<ShardLoader> loader_;
  std::unique_ptr<dist::GradientBucketer> grads_;
  std::unique_ptr<AdamW> adamw_;
  std::unique_ptr<dist::Zero1AdamW> zero_;
  LossContext loss_ctx_;
  LossWeights weights_;
  LrSchedule schedule_ = LrSchedule::Cosine;
  std::unique_ptr<MetricsFile> metrics_;

  // Where the run is: steps and samples so far, the epoch, and the plan from here on.
  int64_t step_ = 0, epoch_ = 0, samples_seen_ = 0, skipped_total_ = 0, consecutive_nonfinite_ = 0;
  StepPlan plan_;
  // --max-minutes: the step count that fits in the time, measured once after the warmup and
  // kept in checkpoints (0: not planned yet, or no time limit).
  int64_t time_planned_total_ = 0;

  // Logging window.
  Clock::time_point t_start_, t_log_, t_first_step_;
  // This rank's time in train_step outside MPI collectives over the logging window: the rank
  // the others wait for has the most (straggler warning).
  double busy_s_ = 0, waited_s_ = 0;
  int64_t busy_steps_ = 0;
  // The logging window's time in the gradient all-reduce (waiting after backward) and in the
  // embedding all-gather, from the step and the all-gather total where it began.
  double window_grad_wait_s_ = 0, window_gather_from_s_ = 0;
  // Device-to-host copies and host collectives of the window's steps (the step and the stop
  // check; not logging, evaluation or checkpoints): each one waits, for the device or the ranks.
  int64_t window_d2h_ = 0, window_host_collectives_ = 0;
  int64_t window_from_step_ = 0;
  // COCA_LINK_CHECK: "auto" (default: when the step waits in collectives longer than it
  // computes), "always" or "off"; COCA_LINK_CHECK_KB: the transfer size. See check_links().
  std::string link_check_mode_ = "auto";
  dist::LinkCheckOptions link_check_;
  void check_links(double compute_s, double wait_s);
  // Tests: COCA_TEST_SLOW_RANK=R:SECONDS makes rank R sleep that long in every step.
  double debug_slow_seconds_ = 0;
  void report_stragglers();
  int64_t start_step_ = 0, log_samples_ = 0;
  std::vector<int64_t> source_samples_;  // this rank's samples from each --train-data source
  nlohmann::json samples_by_source();
  double log_loss_ = 0, log_con_ = 0, log_cap_ = 0;
  int log_count_ = 0;
  Batch batch_;
};

// ---- setup ------------------------------------------------------------------------------

void Trainer::setup_device() {
  comm_ = dist::init(nullptr, nullptr);
  rank_ = comm_->rank(), world_ = comm_->size();
  if (const char* slow = std::getenv("COCA_TEST_SLOW_RANK")) {
    int r = -1;
    double s = 0;
    if (std::sscanf(slow, "%d:%lf", &r, &s) == 2 && r == rank_) debug_slow_seconds_ = s;
  }
  if (const char* mode = std::getenv("COCA_LINK_CHECK")) link_check_mode_ = mode;
  COCA_CHECK(link_check_mode_ == "auto" || link_check_mode_ == "always" || link_check_mode_ == "off",
             "COCA_LINK_CHECK=", link_check_mode_, ": expected auto, always or off");
  if (const char* kb = std::getenv("COCA_LINK_CHECK_KB")) {
    char* end = nullptr;
    const long v = std::strtol(kb, &end, 10);
    COCA_CHECK(end != kb && *end == '\0' && v >= 1 && v <= 65536, "COCA_LINK_CHECK_KB=", kb,
               ": expected a whole number of KB from 1 to 65536");
    link_check_.bytes = static_cast<size_t>(v) * 1024;
  }
  lead_ = rank_ == 0;
  install_signal_handlers();
  threads_ = o_.threads > 0 ? o_.threads
                            : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) /
                                              std::max(1, comm_->local_size()));
  omp_set_num_threads(threads_);
  // GPU <local rank> and NCCL for the tensors, or the CPU and MPI.
  dev_ = dist::select_device(o_.device, comm_->local_rank(), comm_->local_size());
  const double on_gpu = comm_->sum(dev_ == Device::CUDA ? 1.0 : 0.0);
  COCA_CHECK(on_gpu == 0 || on_gpu == world_, "--device ", o_.device, ": ", on_gpu, " of ", world_,
             " ranks found a GPU; every rank must compute on the same kind of device (pass --device cpu or cuda)");
  precision_ = dist::apply_precision(dev_, o_.precision);
  COCA_CHECK(!(o_.zero1 && dev_ == Device::CUDA), "--zero1 runs on the CPU only for now; drop it with --device cuda");
  tensor_comm_ = comm_;
  if (dev_ == Device::CUDA) tensor_comm_ = dist::make_nccl_communicator(*comm_);
}

void Trainer::setup_model() {
  const std::string cfg_path = !o_.model_config.empty() ? o_.model_config : find_model_config(o_.model);
  cfg_ = CocaConfig::from_file(cfg_path);
  // OpenCLIP's overrides of the model config (saved with it in params.json and checkpoints).
  if (o_.force_patch_dropout >= 0) cfg_.vision.patch_dropout = o_.force_patch_dropout;
  auto words = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& w : v) s += w + " ";
    return s;
  };
  if (!o_.image_mean.empty()) cfg_.image_mean = parse_rgb_triple(words(o_.image_mean), "--image-mean", false);
  if (!o_.image_std.empty()) cfg_.image_std = parse_rgb_triple(words(o_.image_std), "--image-std", true);
  model_ = std::make_unique<CoCa>(cfg_, DType::f32, /*initialize_weights=*/false);
  model_->initialize(o_.seed);
  if (!o_.pretrained.empty()) load_weights(*model_, o_.pretrained);
  model_->to(dev_);
  model_->set_grad_checkpointing(o_.grad_checkpointing);
  model_->visual->patch_dropout_gen = &patch_gen_;
  if (o_.lock_image) lock_image_tower(*model_, o_.lock_image_unlocked_groups);
  if (o_.lock_text) lock_text_tower(*model_, o_.lock_text_unlocked_layers);
  int64_t frozen = 0, trainable = 0;
  for (auto& [n, p] : model_->named_parameters()) {
    if (!p.requires_grad()) {
      frozen += p.numel();
      continue;
    }
    trainable += p.numel();
    named_.emplace_back(n, p);
    params_.push_back(p);
  }
  COCA_CHECK(trainable > 0, "every parameter is frozen (--lock-image and --lock-text leave nothing to train)");
  if (lead_ && frozen > 0)
    std::printf("fine-tuning: %lld parameters trainable, %lld frozen (no gradient, optimizer state or all-reduce)\n",
                (long long)trainable, (long long)frozen);
  dist::broadcast_parameters(*tensor_comm_, *model_);
}

void Trainer::setup_run_dir() {
  if (o_.name.empty()) o_.name = broadcast_string(*comm_, lead_ ? default_run_name(o_, cfg_.name) : "");
  run_dir_ = fs::path(o_.logs) / o_.name;
  ckpt_dir_ = run_dir_ / "checkpoints";
  if (lead_) {
    fs::create_directories(ckpt_dir_);
    clean_checkpoint_dir(ckpt_dir_.string());  // leftovers of an interrupted save or prune
    nlohmann::json params_json = {{"options", o_.to_json()},         {"model_config", cfg_.to_json()},
                                  {"world_size", world_},            {"device", dist::device_name(dev_)},
                                  {"precision", precision_}};
    if (dev_ == Device::CUDA) params_json["gpu"] = cuda::device_name();
    write_json_atomic((run_dir_ / "params.json").string(), params_json);
  }
  comm_->barrier();
}

void Trainer::setup_data() {
  LoaderOptions lo;
  lo.dir = o_.train_data;
  lo.rank = rank_;
  lo.world = world_;
  lo.batch_size = o_.batch_size;
  lo.seed = o_.seed;
  lo.image_size = static_cast<int>(cfg_.vision.image_size);
  lo.threads = o_.workers;
  lo.resampled = o_.dataset_resampled;
  lo.epoch_samples = o_.train_num_samples;
  lo.skip_bad_shards = o_.skip_bad_shards;
  lo.scale_min = o_.aug_scale_min;
  lo.scale_max = o_.aug_scale_max;
  lo.context_length = static_cast<int>(cfg_.text.context_length);
  lo.vocab_size = cfg_.text.vocab_size;
  lo.model_name = cfg_.name;
  if (!o_.train_data_upsampling_factors.empty())
    lo.upsampling_factors = parse_upsampling_factors(o_.train_data_upsampling_factors,
                                                     split_sources(o_.train_data).size(), "--train-data-upsampling-factors");
  std::string tokenizer_path;
  const ShardIndex train_index = load_train_sources(o_.train_data).index;  // several sources: joined
  if (train_index.context_length == 0) {  // no stored tokens: tokenize at load time
    std::string note;
    tokenizer_path = eval::resolve_tokenizer(o_.tokenizer, train_index, split_sources(o_.train_data)[0],
                                             "--train-data", cfg_.text.vocab_size, &note);
    lo.tokenizer = std::make_shared<const BpeTokenizer>(BpeTokenizer::load(tokenizer_path));
    if (lead_ && !note.empty()) std::printf("coca-train: tokenizing captions with %s\n", note.c_str());
  }
  lo.ratio_min = o_.aug_ratio_min;
  lo.ratio_max = o_.aug_ratio_max;
  lo.filter = parse_resample_filter(o_.interpolation);
  lo.color = {o_.color_jitter[0], o_.color_jitter[1], o_.color_jitter[2], o_.color_jitter[3],
              o_.color_jitter_prob, o_.gray_scale_prob};
  for (int c = 0; c < 3; ++c) {
    lo.mean[c] = static_cast<float>(cfg_.image_mean[c]);
    lo.std[c] = static_cast<float>(cfg_.image_std[c]);
  }
  loader_ = std::make_unique<ShardLoader>(lo);
  resume_check_ = make_resume_check(tokenizer_path);
}

// The evaluations read their tokenizer when an epoch ends. It often lives outside the shard
// directory, where one host may not see it: every rank reads it now, and a host that cannot stops
// the job before the first step, in one line naming it and the path.
void Trainer::check_eval_tokenizer() {
  if (o_.zeroshot_data.empty() && (o_.val_data.empty() || o_.tokenizer.empty())) return;
  const std::string path =
      o_.zeroshot_data.empty()
          ? o_.tokenizer
          : eval::resolve_tokenizer(o_.tokenizer, loader_->index(), split_sources(o_.train_data)[0], "--zeroshot-data",
                                  cfg_.text.vocab_size);
  std::string failure;
  try {
    (void)BpeTokenizer::load(path);
  } catch (const std::exception& e) {
    failure = e.what();
  }
  const std::vector<std::string> all = comm_->all_gather_strings(failure);
  std::string hosts, first;
  int first_rank = -1;
  for (int r = 0; r < world_; ++r) {
    if (all[r].empty()) continue;
    if (first_rank < 0) first_rank = r, first = all[r];
    if (hosts.find(comm_->host_of(r)) == std::string::npos) hosts += (hosts.empty() ? "" : ", ") + comm_->host_of(r);
  }
  if (first_rank < 0) return;
  // One rank reports for all; the others wait for the abort that its report starts.
  if (rank_ == first_rank)
    throw Error(str_cat("the evaluation tokenizer ", path, " cannot be read on ", hosts, " (", first, ")"));
  comm_->barrier();
}

void Trainer::setup_optimizer() {
  AdamWOptions ao;
  ao.lr = o_.lr, ao.beta1 = o_.beta1, ao.beta2 = o_.beta2, ao.eps = o_.eps, ao.weight_decay = o_.wd;
  dist::BucketOptions bo;
  bo.bucket_bytes = static_cast<size_t>(o_.bucket_mb * (1 << 20));
  bo.shard = o_.zero1;
  grads_ = std::make_unique<dist::GradientBucketer>(tensor_comm_, named_, bo);
  if (o_.zero1) zero_ = std::make_unique<dist::Zero1AdamW>(*grads_, ao);
  else adamw_ = std::make_unique<AdamW>(named_, ao);
  loss_ctx_ = dist::make_loss_context(tensor_comm_, comm_);
  weights_ = LossWeights{o_.coca_contrastive_loss_weight, o_.coca_caption_loss_weight};
  schedule_ = parse_lr_schedule(o_.lr_scheduler);
}

// ---- resume and plan ----------------------------------------------------------------------

// Loads weights, optimizer state and counters from --resume and positions the loader. The
// same world and batch size continue bit-exactly; another world or batch size continues the
// epoch from the same global sample position as a new loader segment (no sample of the epoch
// repeated or skipped), with the schedule re-planned from there.
void Trainer::resume() {
  if (o_.resume.empty()) {
    loader_->start_epoch(0);
    return;
  }
  const std::string dir = resolve_resume(o_.resume, run_dir_.string());
  const nlohmann::json st = read_json(dir + "/state.json");
  // Before anything is loaded: a run that reads other data, or the same data in another
  // order, cannot continue the checkpoint's epoch.
  const bool fresh_epoch = resume_check_differs(st, dir);
  load_weights(*model_, dir + "/model.safetensors");
  const std::string opt_file = dir + "/optimizer.safetensors";
  if (zero_) zero_->load_state_dict(load_safetensors(opt_file), opt_file);  // this rank's slices
  else restore_optimizer(*adamw_, load_safetensors(opt_file), opt_file);
  step_ = st.at("step").get<int64_t>();
  epoch_ = st.at("epoch").get<int64_t>();
  samples_seen_ = st.at("samples_seen").get<int64_t>();
  skipped_total_ = st.value("nonfinite_skipped", int64_t{0});
  time_planned_total_ = st.value("time_planned_total_steps", int64_t{0});
  const int saved_world = st.at("world_size").get<int>();
  const int saved_batch = st.at("options").at("batch_size").get<int>();
  const auto& ranks = st.at("ranks");
  COCA_CHECK(ranks.is_array() && static_cast<int>(ranks.size()) == saved_world, "--resume ", dir,
             ": state.json lists ", ranks.size(), " rank states for a world of ", saved_world);
  if (fresh_epoch) {
    loader_->start_epoch(epoch_);
    if (lead_)
      std::printf("--resume-new-data: epoch %lld starts afresh over %s from step %lld (the checkpoint's samples_seen "
                  "%lld carries on)\n",
                  (long long)epoch_, o_.train_data.c_str(), (long long)step_, (long long)samples_seen_);
  } else if (LoaderState::from_json(ranks.at(0).at("loader")).epoch != epoch_) {
    loader_->start_epoch(epoch_);  // saved as the last epoch ended: the next one starts afresh
  } else if (saved_world == world_ && saved_batch == o_.batch_size) {
    loader_->restore(LoaderState::from_json(ranks.at(rank_).at("loader")));
  } else {
    std::vector<LoaderState> old;
    for (const auto& r : ranks) old.push_back(LoaderState::from_json(r.at("loader")));
    const LoaderState cont = LoaderState::continue_elsewhere(old, saved_batch);
    loader_->restore(cont);
    if (lead_)
      std::printf("resuming a checkpoint of %d rank(s) x %d samples on %d rank(s) x %d: epoch %lld continues "
                  "without the %lld samples already taken (the data order differs from an uninterrupted run)\n",
                  saved_world, saved_batch, world_, o_.batch_size, (long long)epoch_,
                  (long long)segment_samples(cont.segments));
  }
  if (lead_) std::printf("resumed from %s at step %lld (epoch %lld)\n", dir.c_str(), (long long)step_, (long long)epoch_);
}

// What must be the same for a resumed run to continue the checkpoint's epoch: the data (its
// index.json, which lists every shard and its count), the data order (seed), how many batches a
// step and an epoch take, and the tokens (context length; the tokenizer when captions are
// tokenized at load time). World and batch size may change (the elastic path).
nlohmann::json Trainer::make_resume_check(const std::string& tokenizer_path) const {
  // One set: the sha256 of its index.json; several: of their digests and the factors.
  std::string data_sha;
  const std::vector<std::string> sources = split_sources(o_.train_data);
  for (const std::string& dir : sources) data_sha += sha256_file((fs::path(dir) / "index.json").string()) + "\n";
  if (sources.size() == 1) data_sha.pop_back();
  else {
    const std::string joined = data_sha + o_.train_data_upsampling_factors;
    data_sha = sha256_hex(joined.data(), joined.size());
  }
  const std::string tokenizer = tokenizer_path.empty() ? std::string() : sha256_file(tokenizer_path);
  return {{"train_data_sha256", data_sha},
          {"train_data", o_.train_data},
          {"seed", std::to_string(o_.seed)},
          {"accum_freq", o_.accum_freq},
          {"dataset_resampled", o_.dataset_resampled},
          {"train_num_samples", o_.train_num_samples},
          {"context_length", cfg_.text.context_length},
          {"tokenizer_sha256", tokenizer}};
}

// Compares this run with the checkpoint's resume_check (or, for a checkpoint from before it,
// the options it saved). A difference is an error naming every field and both values, unless
// --resume-new-data says it is meant; then the return value is true (start the epoch afresh).
bool Trainer::resume_check_differs(const nlohmann::json& st, const std::string& dir) const {
  const nlohmann::json& now = resume_check_;
  nlohmann::json then;
  if (st.contains("resume_check")) {
    then = st.at("resume_check");
  } else {  // older checkpoints: the options they ran with, no data fingerprint
    const nlohmann::json& op = st.at("options");
    then = {{"seed", op.at("seed").is_string() ? op.at("seed").get<std::string>() : std::to_string(op.at("seed").get<uint64_t>())},
            {"accum_freq", op.at("accum_freq")},
            {"dataset_resampled", op.at("dataset_resampled")},
            {"train_num_samples", op.at("train_num_samples")}};
    if (lead_)
      std::printf("note: %s predates the data fingerprint; the data cannot be checked, only the settings\n", dir.c_str());
  }
  auto shown = [](const nlohmann::json& v) {
    if (v.is_string()) {
      const std::string s = v.get<std::string>();
      return s.empty() ? std::string("none") : s.size() == 64 ? s.substr(0, 12) + "..." : s;
    }
    return v.dump();
  };
  const std::pair<const char*, const char*> fields[] = {
      {"train_data_sha256", "--train-data (sha256 of index.json)"},
      {"seed", "--seed"},
      {"accum_freq", "--accum-freq"},
      {"dataset_resampled", "--dataset-resampled"},
      {"train_num_samples", "--train-num-samples"},
      {"context_length", "context length"},
      {"tokenizer_sha256", "tokenizer (sha256)"}};
  std::string diff;
  for (auto [key, label] : fields) {
    if (!then.contains(key) || then.at(key) == now.at(key)) continue;
    diff += str_cat(diff.empty() ? "" : "; ", label, " ", shown(then.at(key)), " in the checkpoint, ",
                    shown(now.at(key)), " now");
    if (std::string(key) == "train_data_sha256" && then.contains("train_data"))
      diff += str_cat(" (", then.at("train_data").get<std::string>(), " then, ", o_.train_data, " now)");
  }
  if (diff.empty()) {
    if (o_.resume_new_data && lead_)
      std::printf("--resume-new-data: the data and settings are the checkpoint's; resuming as usual\n");
    return false;
  }
  COCA_CHECK(o_.resume_new_data, "--resume ", dir, ": this run differs from the checkpoint in ", diff,
             "; continuing its epoch would repeat or skip samples. Resume with the checkpoint's data and settings, "
             "or pass --resume-new-data to keep its weights, optimizer and step and start the epoch afresh");
  if (lead_) std::printf("--resume-new-data: %s\n", diff.c_str());
  return true;
}

void Trainer::replan() {
  PlanInputs in;
  in.step = step_;
  in.epoch = epoch_;
  in.epoch_batches = loader_->batches_this_epoch();
  in.batches_taken = loader_->state().batch;
  in.epochs = o_.epochs;
  in.accum_freq = o_.accum_freq;
  in.max_steps = o_.max_steps;
  in.epochs_cooldown = o_.epochs_cooldown;
  in.batches_of_epoch = [this](int64_t e) { return loader_->batches_per_epoch(e); };
  plan_ = plan_steps(in);
  if (time_planned_total_ > 0) plan_.total_steps = std::min(plan_.total_steps, time_planned_total_);
}

// --max-minutes plans the schedule: once the warmup is over, the measured time per step (rank
// 0's, which every rank follows) sets the step count that fits in the time left, so the cosine
// ends when the time does instead of being cut off part-way. The wall clock still stops the
// run if steps slow down later.
void Trainer::plan_for_time() {
  const int64_t timed = step_ - start_step_ - 1;  // steps since the first of this process
  const double per_step = o_.debug_step_seconds > 0
                              ? o_.debug_step_seconds
                              : seconds_since(t_first_step_) / static_cast<double>(std::max<int64_t>(timed, 1));
  // 2% and two steps held back for what the warmup did not show: saves, zero-shot, slower steps.
  const double left = 0.98 * (o_.max_minutes * 60.0 - seconds_since(t_start_)) - 2 * per_step;
  const double fit = lead_ ? std::floor(std::max(left, 0.0) / per_step) : 0.0;
  const int64_t planned = step_ + std::max<int64_t>(1, static_cast<int64_t>(comm_->sum(fit)));
  const int64_t by_epochs = plan_.total_steps;
  time_planned_total_ = planned;
  replan();
  if (lead_) {
    std::printf("time plan: %.3f s per step over %lld steps; %s at step %lld (%s of --max-minutes %g left)\n", per_step,
                (long long)timed, planned < by_epochs ? "the schedule now ends" : "the epochs end first,",
                (long long)plan_.total_steps, format_duration(std::max(left, 0.0)).c_str(), o_.max_minutes);
    metrics_->write({{"step", step_}, {"time_planned_total_steps", planned}, {"seconds_per_step", per_step}});
  }
}

// ---- the step -----------------------------------------------------------------------------

StepResult Trainer::train_step(double lr) {
  StepResult r;
  if (debug_slow_seconds_ > 0) std::this_thread::sleep_for(std::chrono::duration<double>(debug_slow_seconds_));
  std::vector<MicroBatch> micro(o_.accum_freq);
  for (int k = 0; k < o_.accum_freq; ++k) {
    COCA_CHECK(loader_->next(batch_), "rank ", rank_, ": internal error: the loader ended epoch ", epoch_,
               " before the planned step ", step_, " (plan and loader disagree)");
    source_samples_.resize(batch_.source_counts.size(), 0);
    for (size_t k = 0; k < batch_.source_counts.size(); ++k) source_samples_[k] += batch_.source_counts[k];
    COCA_CHECK(batch_.tokens.defined(), "--train-data ", o_.train_data,
               ": shards have no 'tokens' (make them with coca-shard --tokenizer)");
    COCA_CHECK(batch_.tokens.size(1) == cfg_.text.context_length, "--train-data ", o_.train_data, ": tokens of length ",
               batch_.tokens.size(1), " but the model's context_length is ", cfg_.text.context_length);
    // The tokens stay on the host: the trimmed forward plans its buckets from them and uploads
    // only what it runs (reading them back from the device would wait for it every step).
    micro[k] = {batch_.images.to(dev_), batch_.tokens};  // pinned staging on cuda
  }
  AccumulateHooks hooks;
  // Patch dropout's choice depends only on where the run is, so a resumed run draws the same
  // (and both passes of an accumulated step draw the same for a micro-batch).
  hooks.before_forward = [this](int k) {
    patch_gen_.seed_with(o_.seed ^ (0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(1 + step_ * o_.accum_freq + k)) ^
                         (static_cast<uint64_t>(rank_) << 40));
  };
  hooks.backward = [this](int k, const Tensor& loss) {
    SuspendHooks quiet(params_, k + 1 < o_.accum_freq);  // the all-reduce runs in the last backward
    loss.backward();
  };
  model_->set_training(true);
  const StepLosses l = accumulate_step(*model_, micro, cfg_.text.pad_id, weights_, loss_ctx_, hooks,
                                       step_ == o_.debug_nonfinite_step);
  model_->set_training(false);
  grads_->finish();
  window_grad_wait_s_ += grads_->last_wait_seconds();
  // On CUDA the clipping scale stays on the device: AdamW applies it as it reads the gradients.
  // The losses and the norm come to the host together, in one copy.
  GradNorm gn;
  std::array<double, 3> losses{};
  if (zero_) {
    r.grad_norm = zero_->clip_grad_norm(o_.grad_clip_norm);
    losses = l.values();
  } else if (gn = clip_grad_norm_deferred(params_, o_.grad_clip_norm); gn.norm_scale.defined()) {
    NoGradGuard no_grad;
    const Tensor all = concat({l.total.reshape({1}).to(DType::f64), l.contrastive.reshape({1}).to(DType::f64),
                               l.caption.reshape({1}).to(DType::f64), gn.norm_scale.slice(0, 0, 1)},
                              0);
    const std::vector<double> v = all.to_vector<double>();
    losses = {v[0], v[1], v[2]};
    r.grad_norm = v[3];
  } else {
    losses = l.values();
    r.grad_norm = gn.norm();
  }
  r.loss = losses[0];
  r.contrastive = losses[1];
  r.caption = losses[2];
  const bool finite_here = std::isfinite(r.loss) && std::isfinite(r.grad_norm);
  r.finite = comm_->sum(finite_here ? 0.0 : 1.0) == 0.0;
  if (r.finite) {
    if (zero_) zero_->step(lr);
    else adamw_->step(lr, gn.norm_scale);
    model_->clamp_logit_scale();
    consecutive_nonfinite_ = 0;
  } else {
    ++skipped_total_;
    ++consecutive_nonfinite_;
    if (lead_) {
      // Numbered as the loss records are: step_ counts the steps before this one.
      std::fprintf(stderr, "warning: step %lld has a non-finite loss or gradient; skipped (%lld so far)\n",
                   (long long)(step_ + 1), (long long)skipped_total_);
      metrics_->write({{"step", step_ + 1}, {"nonfinite_skipped", skipped_total_}});
    }
    COCA_CHECK(consecutive_nonfinite_ < o_.max_nonfinite, consecutive_nonfinite_,
               " non-finite steps in a row (limit --max-nonfinite ", o_.max_nonfinite,
               "); stopping. The last checkpoint holds finite weights.");
  }
  for (Tensor& p : params_) p.zero_grad();
  return r;
}

// ---- logging ------------------------------------------------------------------------------

// With several --train-data sources: the samples each gave this run, over all ranks
// ({"A": n, "B": m}); null with one source.
nlohmann::json Trainer::samples_by_source() {
  const std::vector<std::string> dirs = split_sources(o_.train_data);
  if (dirs.size() < 2) return nullptr;
  nlohmann::json out = nlohmann::json::object();
  for (size_t k = 0; k < dirs.size(); ++k)
    out[dirs[k]] = static_cast<int64_t>(comm_->sum(k < source_samples_.size() ? static_cast<double>(source_samples_[k]) : 0.0));
  return out;
}

// `last`: the run stops after this step, so the window is written whatever its length.
void Trainer::log_progress(const StepResult& r, double lr, bool last) {
  const int64_t step_samples = static_cast<int64_t>(o_.batch_size) * world_ * o_.accum_freq;
  samples_seen_ += step_samples;
  log_samples_ += step_samples;
  if (r.finite) {  // this rank's losses, summed over the ranks at logging steps only
    log_loss_ += r.loss;
    log_con_ += r.contrastive;
    log_cap_ += r.caption;
    ++log_count_;
  }
  if (step_ % o_.log_every_n_steps != 0 && step_ != plan_.total_steps && !last) return;
  check_deferred_errors();  // a bad caption target seen on the GPU since the last window
  // Collectives, every rank (a step that logs nothing makes none of these).
  const double window_loss = comm_->sum(log_loss_) / world_, window_con = comm_->sum(log_con_) / world_,
               window_cap = comm_->sum(log_cap_) / world_;
  const nlohmann::json by_source = samples_by_source();
  const double dt = seconds_since(t_log_);
  const double rate = log_samples_ / std::max(dt, 1e-9);
  const double elapsed = seconds_since(t_start_);
  const double eta = (plan_.total_steps - step_) * elapsed / std::max<int64_t>(step_ - start_step_, 1);
  if (lead_ && log_count_ > 0) {
    const double loss = window_loss / log_count_, con = window_con / log_count_, cap = window_cap / log_count_;
    const double scale = std::exp(model_->logit_scale.item());
    const bool captions = model_->has_decoder();  // a CLIP has the contrastive loss only
    char parts[96] = "";
    if (captions) std::snprintf(parts, sizeof parts, " (contrastive %.4f, caption %.4f)", con, cap);
    std::printf("step %lld/%lld (%.0f%%) epoch %lld | loss %.4f%s | lr %.3g | scale %.2f | %.1f samples/s (%.1f/rank) | "
                "ETA %s\n",
                (long long)step_, (long long)plan_.total_steps, 100.0 * step_ / plan_.total_steps, (long long)epoch_,
                loss, parts, lr, scale, rate, rate / world_, format_duration(eta).c_str());
    if (!by_source.is_null()) std::printf("  samples by source since the start of this run: %s\n", by_source.dump().c_str());
    std::fflush(stdout);
    const double train_flops = 3.0 * forward_flops_per_sample(cfg_);
    const double steps = static_cast<double>(std::max<int64_t>(step_ - window_from_step_, 1));
    nlohmann::json row = {{"step", step_}, {"epoch", epoch_}, {"samples_seen", samples_seen_}, {"loss", loss},
                          {"contrastive_loss", con}, {"caption_loss", cap}, {"lr", lr}, {"logit_scale", scale},
                          {"grad_norm", r.grad_norm}, {"samples_per_s", rate}, {"samples_per_s_per_rank", rate / world_},
                          {"gflops_per_s", rate * train_flops / 1e9}, {"wait_comm_s", grads_->last_wait_seconds()},
                          {"elapsed_s", elapsed}, {"host_tensor_peak_mib", host_tensor_peak_bytes() / 1048576.0},
                          {"step_s", dt / steps}, {"grad_allreduce_wait_s", window_grad_wait_s_ / steps},
                          {"d2h_copies_per_step", window_d2h_ / steps},
                          {"host_collectives_per_step", window_host_collectives_ / steps},
                          {"embed_gather_s", (dist::all_gather_with_grad_seconds() - window_gather_from_s_) / steps}};
    if (!captions) row.erase("caption_loss");
    metrics_->write(row);
    if (!by_source.is_null()) metrics_->write({{"step", step_}, {"samples_by_source", by_source}});
  }
  window_from_step_ = step_;
  window_grad_wait_s_ = 0;
  window_d2h_ = window_host_collectives_ = 0;
  window_gather_from_s_ = dist::all_gather_with_grad_seconds();
  report_stragglers();
  reset_host_tensor_peak_bytes();  // the peak of host tensor memory over each logging window
  t_log_ = Clock::now();
  log_samples_ = 0;
  log_loss_ = log_con_ = log_cap_ = 0;
  log_count_ = 0;
}

// Every rank's time per step outside collectives since the last report, gathered (all ranks): one
// rank far above the median is the one the others wait for, and is named with its host.
void Trainer::report_stragglers() {
  // Over at least 5 steps (every rank has taken the same number), so that one slow step of a
  // busy machine is not taken for a straggler.
  if (world_ == 1 || busy_steps_ < 5) return;
  const double mine = busy_s_ / busy_steps_, waited = waited_s_ / busy_steps_;
  busy_s_ = waited_s_ = 0;
  busy_steps_ = 0;
  const std::vector<int64_t> us = comm_->all_gather_value(static_cast<int64_t>(mine * 1e6));
  const std::vector<int64_t> wait_us = comm_->all_gather_value(static_cast<int64_t>(waited * 1e6));
  auto median_of = [](std::vector<int64_t> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2] / 1e6;
  };
  const double median = median_of(us);
  check_links(median, median_of(wait_us));  // every rank: the same figures, the same decision
  if (!lead_) return;
  const int slow = static_cast<int>(std::max_element(us.begin(), us.end()) - us.begin());
  const double slowest = us[slow] / 1e6;
  metrics_->write({{"step", step_}, {"step_compute_s_median", median}, {"step_compute_s_max", slowest},
                   {"step_compute_s_max_rank", slow}, {"step_compute_s_max_host", comm_->host_of(slow)}});
  if (slowest > 2 * median && slowest - median > 0.05)
    std::fprintf(stderr,
                 "warning: straggler: rank %d (%s) spends %.0f ms a step outside collectives, the median rank %.0f "
                 "ms; the other ranks wait for it\n",
                 slow, comm_->host_of(slow).c_str(), slowest * 1e3, median * 1e3);
}

// When the median rank waits in collectives longer than it computes, the network may be what the
// step waits for; a ring is as slow as its slowest link, so every rank waits the same and only
// point-to-point timings between hosts can name the one behind it (coca/dist/link_check.h). A
// few ms on a healthy network; training state is untouched.
void Trainer::check_links(double compute_s, double wait_s) {
  if (link_check_mode_ == "off" || (link_check_mode_ == "auto" && wait_s <= compute_s)) return;
  const dist::LinkCheck c = dist::check_links(*comm_, link_check_);
  if (c.hosts < 2 || !lead_) return;
  std::string names;
  for (const dist::SlowLink& s : c.slow) {
    names += (names.empty() ? "" : ",") + s.host;
    std::fprintf(stderr, "warning: slow link: %s; every collective waits for it\n", dist::describe(s, c, link_check_).c_str());
  }
  metrics_->write({{"step", step_}, {"link_check_hosts", c.hosts}, {"link_check_ms_median", c.median_ms},
                   {"link_check_ms_max", c.max_ms}, {"link_check_s", c.seconds}, {"slow_link_hosts", names}});
}

// ---- saving -------------------------------------------------------------------------------

// Writes step_<N>.tmp/, makes it durable and publishes it as `latest`. Every rank takes part
// (loader states and ZeRO-1 shards are gathered under the collective timeout); rank 0 writes.
// Returns false when the save failed (the previous checkpoint stays `latest`, the partial
// directory is removed); every rank gets the same answer. `fatal`: the failure ends the run
// (reported as an error rather than a warning).
bool Trainer::save(const char* why, bool fatal) {
  const std::string name = checkpoint_name(step_);
  const LoaderState ls = loader_->state();
  const nlohmann::json mine = {{"rank", rank_}, {"loader", ls.to_json()}};
  const std::vector<std::string> all = comm_->all_gather_strings(mine.dump());
  // ZeRO-1 assembles the whole state on every rank (a collective); either way the file has
  // AdamW's layout, so a checkpoint resumes with or without --zero1.
  NamedTensors opt_state = zero_ ? zero_->state_dict(named_) : lead_ ? optimizer_tensors(*adamw_) : NamedTensors{};
  std::string failure;
  if (lead_) {
    try {
      const fs::path tmp = ckpt_dir_ / (name + ".tmp");
      fs::create_directories(tmp);
      save_weights(*model_, (tmp / "model.safetensors").string());
      save_safetensors((tmp / "optimizer.safetensors").string(), opt_state);
      nlohmann::json st = {{"format", 1},
                           {"step", step_},
                           {"epoch", epoch_},
                           {"samples_seen", samples_seen_},
                           {"nonfinite_skipped", skipped_total_},
                           {"time_planned_total_steps", time_planned_total_},
                           {"world_size", world_},
                           {"model_config", cfg_.to_json()},
                           {"options", o_.to_json()},
                           {"command_line", o_.command_line},
                           {"resume_check", resume_check_},
                           {"ranks", nlohmann::json::array()}};
      for (const auto& s : all) st["ranks"].push_back(nlohmann::json::parse(s));
      write_json_atomic((tmp / "state.json").string(), st);
      publish_checkpoint(ckpt_dir_.string(), name, step_, o_.keep_checkpoints);
      std::printf("saved %s (%s)\n", (ckpt_dir_ / name).string().c_str(), why);
    } catch (const std::exception& e) {
      failure = e.what();
      discard_checkpoint_tmp(ckpt_dir_.string(), name);
    }
    std::fflush(stdout);
  }
  const bool ok = comm_->sum(failure.empty() ? 0.0 : 1.0) == 0.0;
  if (!ok && lead_) {
    std::string latest = "none";
    try {
      latest = resolve_resume("latest", run_dir_.string());
    } catch (const std::exception&) {
    }
    std::fprintf(stderr, "%s: checkpoint %s failed: %s; the newest complete checkpoint is %s\n",
                 fatal ? "coca-train" : "warning", name.c_str(), failure.c_str(), latest.c_str());
  }
  return ok;
}

void Trainer::evaluate() {
  if (o_.zeroshot_data.empty()) return;
  eval::ZeroShotOptions zo;
  zo.data = o_.zeroshot_data;
  zo.templates_file = o_.zeroshot_templates;
  zo.tokenizer =
      eval::resolve_tokenizer(o_.tokenizer, loader_->index(), split_sources(o_.train_data)[0], "--zeroshot-data",
                                  cfg_.text.vocab_size);
  zo.rank = rank_;
  zo.world = world_;
  const auto t0 = Clock::now();
  const eval::ZeroShotResult r = eval::zeroshot(*model_, zo, eval::mpi_reducer(*comm_));
  if (lead_) {
    std::printf("zero-shot %s: top-1 %.2f%%  top-5 %.2f%%  mean per class %.2f%%  (%lld images, %lld classes, %s)\n",
                o_.zeroshot_data.c_str(), 100 * r.top1, 100 * r.top5, 100 * r.mean_per_class, (long long)r.images,
                (long long)r.classes, format_duration(seconds_since(t0)).c_str());
    metrics_->write({{"step", step_}, {"epoch", epoch_}, {"zeroshot_top1", r.top1}, {"zeroshot_top5", r.top5},
                     {"zeroshot_mean_per_class", r.mean_per_class}});
  }
}

// --val-data: loss and retrieval on a captioned set with the current weights; every rank reads
// its part and all end with the same figures (see coca/eval/validation.h).
void Trainer::validate() {
  if (o_.val_data.empty()) return;
  eval::ValidationOptions vo;
  vo.data = o_.val_data;
  vo.tokenizer = o_.tokenizer;
  vo.batch_size = o_.batch_size;
  vo.max_samples = o_.val_num_samples;
  vo.weights = weights_;
  vo.rank = rank_;
  vo.world = world_;
  const auto t0 = Clock::now();
  const eval::ValidationResult r = eval::validate(*model_, vo, eval::mpi_reducer(*comm_));
  if (!lead_) return;
  const eval::RecallMetrics &i2t = r.retrieval.image_to_text, &t2i = r.retrieval.text_to_image;
  std::printf("val epoch %lld step %lld: loss %.4f (contrastive %.4f, caption %.4f) | image->text R@1/5/10 "
              "%.2f/%.2f/%.2f%% | text->image R@1/5/10 %.2f/%.2f/%.2f%% | median rank %g/%g | %lld samples, %s\n",
              (long long)epoch_, (long long)step_, r.loss, r.contrastive, r.caption, 100 * i2t.r1, 100 * i2t.r5,
              100 * i2t.r10, 100 * t2i.r1, 100 * t2i.r5, 100 * t2i.r10, i2t.median_rank, t2i.median_rank,
              (long long)r.samples, format_duration(seconds_since(t0)).c_str());
  std::fflush(stdout);
  metrics_->write({{"step", step_},
                   {"epoch", epoch_},
                   {"val_loss", r.loss},
                   {"val_contrastive_loss", r.contrastive},
                   {"val_caption_loss", r.caption},
                   {"val_samples", r.samples},
                   {"val_images", r.retrieval.images},
                   {"val_image_to_text_R@1", i2t.r1},
                   {"val_image_to_text_R@5", i2t.r5},
                   {"val_image_to_text_R@10", i2t.r10},
                   {"val_image_to_text_mean_rank", i2t.mean_rank},
                   {"val_image_to_text_median_rank", i2t.median_rank},
                   {"val_text_to_image_R@1", t2i.r1},
                   {"val_text_to_image_R@5", t2i.r5},
                   {"val_text_to_image_R@10", t2i.r10},
                   {"val_text_to_image_mean_rank", t2i.mean_rank},
                   {"val_text_to_image_median_rank", t2i.median_rank}});
}

// ---- the run ------------------------------------------------------------------------------

int Trainer::run() {
  setup_device();
  setup_model();
  setup_run_dir();
  setup_data();
  check_eval_tokenizer();
  setup_optimizer();
  resume();
  replan();
  COCA_CHECK(plan_.total_steps > step_ || !o_.resume.empty(), "--train-data ", o_.train_data, ": ",
             loader_->batches_per_epoch(0), " batches per rank per epoch are fewer than --accum-freq ", o_.accum_freq,
             " (lower --batch-size or use more data)");
  if (lead_)
    metrics_ = std::make_unique<MetricsFile>((run_dir_ / "metrics.jsonl").string(), o_.resume.empty() ? -1 : step_);
  if (lead_ && o_.report_tensorboard) {
    // A new event file per start; its SessionLog START at the first step to come makes
    // TensorBoard drop what an earlier file holds from there on (steps redone after a resume).
    const std::string tb_dir = (run_dir_ / "tensorboard").string();
    metrics_->also_to_tensorboard(std::make_unique<EventFileWriter>(new_event_file_path(tb_dir), step_ + 1));
    std::printf("tensorboard: writing to %s (view with: tensorboard --logdir %s)\n", tb_dir.c_str(), tb_dir.c_str());
  }
  if (lead_)
    for (const std::string& note : o_.notes) std::printf("coca-train: %s\n", note.c_str());
  if (lead_)
    std::printf("coca-train: %s, %lld parameters, %d rank(s) on %s (%s), global batch %d, %lld steps over %d epochs "
                "(epoch %lld ends at step %lld)\n",
                cfg_.name.c_str(), (long long)model_->parameter_count(), world_,
                dev_ == Device::CUDA ? str_cat("GPU ", cuda::device_name()).c_str()
                                     : str_cat("CPU x ", threads_, " threads, OpenBLAS ", cpu::blas_core_name()).c_str(),
                precision_.c_str(), o_.batch_size * world_ * o_.accum_freq, (long long)plan_.total_steps, o_.epochs,
                (long long)epoch_, (long long)plan_.epoch_end_step);
  std::fflush(stdout);

  t_start_ = t_log_ = Clock::now();
  start_step_ = step_;
  window_from_step_ = step_;
  int exit_code = 0;
  bool stopped = false;
  while (step_ < plan_.total_steps) {
    // An epoch with no whole step (possible with tiny shards) is passed over.
    while (step_ == plan_.epoch_end_step && epoch_ + 1 < o_.epochs) {
      loader_->start_epoch(++epoch_);
      replan();
    }
    const double lr = learning_rate(schedule_, o_.lr, step_, o_.warmup, plan_.total_steps, plan_.cooldown_steps,
                                    o_.lr_cooldown_end);
    const double waited_before = comm_->wait_seconds();
    const Clock::time_point step_start = Clock::now();
    int64_t d2h_from = device_to_host_copies(), collectives_from = dist::host_collectives();
    const StepResult r = train_step(lr);
    window_d2h_ += device_to_host_copies() - d2h_from;
    window_host_collectives_ += dist::host_collectives() - collectives_from;
    busy_s_ += seconds_since(step_start) - (comm_->wait_seconds() - waited_before);
    waited_s_ += comm_->wait_seconds() - waited_before;
    ++busy_steps_;
    ++step_;
    if (step_ == start_step_ + 1) t_first_step_ = Clock::now();
    // Measure after the warmup (the rate settles and the lr does not depend on the total yet),
    // over at least 3 steps of this process.
    if (o_.max_minutes > 0 && time_planned_total_ == 0 && step_ >= std::max<int64_t>(o_.warmup, start_step_ + 4))
      plan_for_time();

    const bool epoch_end = step_ == plan_.epoch_end_step;
    const bool done = step_ >= plan_.total_steps;
    if (epoch_end) {
      ++epoch_;
      if (!done && epoch_ < o_.epochs) {
        if (o_.zeroshot_frequency > 0 && epoch_ % o_.zeroshot_frequency == 0) evaluate();
        if (o_.val_frequency > 0 && epoch_ % o_.val_frequency == 0) validate();
        loader_->start_epoch(epoch_);
        replan();
      }
    }
    const bool time_up = o_.max_minutes > 0 && seconds_since(t_start_) > o_.max_minutes * 60;
    d2h_from = device_to_host_copies();
    collectives_from = dist::host_collectives();
    const bool stop = !done && comm_->sum((g_stop_signal || (lead_ && time_up)) ? 1.0 : 0.0) > 0;
    const bool periodic = (o_.save_every_n_steps > 0 && step_ % o_.save_every_n_steps == 0) ||
                          (epoch_end && o_.save_frequency > 0 && epoch_ % o_.save_frequency == 0);
    const bool by_signal = stop && comm_->sum(g_stop_signal ? 1.0 : 0.0) > 0;
    window_d2h_ += device_to_host_copies() - d2h_from;
    window_host_collectives_ += dist::host_collectives() - collectives_from;
    log_progress(r, lr, stop);
    if (stop || done || periodic) {
      const char* why = stop ? (by_signal ? "stop requested by signal" : "time limit") : done ? "end of training"
                                                                                              : "periodic";
      const bool fatal = !o_.continue_on_save_error || stop || done;
      if (!save(why, fatal) && fatal) {
        exit_code = 1;
        break;
      }
    }
    if (stop) {
      if (lead_)
        std::printf("stopped at step %lld: %s; resume with --resume latest --name %s\n", (long long)step_,
                    by_signal ? "signal received" : "--max-minutes reached", o_.name.c_str());
      stopped = true;
      break;
    }
  }
  if (exit_code == 0 && step_ >= plan_.total_steps) {
    evaluate();
    validate();
  }
  comm_->barrier();
  if (lead_)
    std::printf("%s: %lld steps, %lld samples, %lld non-finite steps skipped, %s; logs in %s\n",
                exit_code || stopped ? "stopped" : "done", (long long)step_, (long long)samples_seen_, (long long)skipped_total_,
                format_duration(seconds_since(t_start_)).c_str(), run_dir_.string().c_str());
  std::fflush(stdout);
  return exit_code;
}

}  // namespace

int run_training(TrainOptions opts) { return Trainer(std::move(opts)).run(); }

}  // namespace coca::train
