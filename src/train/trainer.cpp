// coca-train's loop. One process per rank; every rank runs the same number of steps (the loader
// is lockstep), issues the same collectives in the same order, and agrees on every decision
// (skip a non-finite step, stop, save) through an all-reduce.
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
#include "coca/data/tokenizer.h"
#include "coca/dist/autograd.h"
#include "coca/dist/bucketer.h"
#include "coca/dist/check.h"
#include "coca/dist/device.h"
#include "coca/dist/mpi.h"
#include "coca/dist/nccl.h"
#include "coca/dist/zero.h"
#include "coca/eval/common.h"
#include "coca/eval/zeroshot.h"
#include "coca/kernels/cuda/runtime.h"
#include "coca/loss/coca_loss.h"
#include "coca/model/flops.h"
#include "coca/model/weights.h"
#include "coca/train/checkpoint.h"
#include "coca/train/run_log.h"

namespace coca::train {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

volatile std::sig_atomic_t g_stop_signal = 0;
volatile std::sig_atomic_t g_interrupts = 0;

extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }
extern "C" void on_interrupt(int) {
  if (++g_interrupts >= 2) std::_Exit(130);  // a second Ctrl-C exits at once
  g_stop_signal = SIGINT;
}

void install_signal_handlers() {
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGUSR1, on_stop_signal);
  std::signal(SIGINT, on_interrupt);
}

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Every rank's string, on rank 0 (others get an empty vector).
std::vector<std::string> gather_strings(const dist::MpiCommunicator& comm, const std::string& s) {
  const int n = static_cast<int>(s.size());
  std::vector<int> sizes(comm.size());
  COCA_MPI_CHECK(MPI_Gather(&n, 1, MPI_INT, sizes.data(), 1, MPI_INT, 0, comm.comm()));
  std::vector<int> displs(comm.size(), 0);
  int total = 0;
  for (int r = 0; r < comm.size(); ++r) displs[r] = total, total += sizes[r];
  std::string all(comm.rank() == 0 ? total : 0, '\0');
  COCA_MPI_CHECK(MPI_Gatherv(s.data(), n, MPI_CHAR, all.data(), sizes.data(), displs.data(), MPI_CHAR, 0,
                             comm.comm()));
  std::vector<std::string> out;
  if (comm.rank() == 0)
    for (int r = 0; r < comm.size(); ++r) out.push_back(all.substr(displs[r], sizes[r]));
  return out;
}

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

}  // namespace

int run_training(TrainOptions o) {
  auto comm = dist::init(nullptr, nullptr);
  const int rank = comm->rank(), world = comm->size();
  const bool lead = rank == 0;
  install_signal_handlers();
  const int threads = o.threads > 0 ? o.threads
                                    : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) /
                                                      std::max(1, comm->local_size()));
  omp_set_num_threads(threads);

  // ---- device: GPU <local rank> and NCCL for the tensors, or the CPU and MPI ------------
  const Device dev = dist::select_device(o.device, comm->local_rank(), comm->local_size());
  const double on_gpu = comm->sum(dev == Device::CUDA ? 1.0 : 0.0);
  COCA_CHECK(on_gpu == 0 || on_gpu == world, "--device ", o.device, ": ", on_gpu, " of ", world,
             " ranks found a GPU; every rank must compute on the same kind of device (pass --device cpu or cuda)");
  const std::string precision = dist::apply_precision(dev, o.precision);
  COCA_CHECK(!(o.zero1 && dev == Device::CUDA), "--zero1 runs on the CPU only for now; drop it with --device cuda");
  std::shared_ptr<dist::Communicator> tensor_comm = comm;
  if (dev == Device::CUDA) tensor_comm = dist::make_nccl_communicator(*comm);

  // ---- model ------------------------------------------------------------------------
  const std::string cfg_path = !o.model_config.empty() ? o.model_config : find_model_config(o.model);
  CocaConfig cfg = CocaConfig::from_file(cfg_path);
  CoCa model(cfg);
  model.initialize(o.seed);
  if (!o.pretrained.empty()) load_weights(model, o.pretrained);
  model.to(dev);
  const auto named = model.named_parameters();
  std::vector<Tensor> params;
  for (auto& [n, p] : named) params.push_back(p);
  dist::broadcast_parameters(*tensor_comm, model);

  // ---- run directory -------------------------------------------------------------------
  if (o.name.empty()) o.name = broadcast_string(*comm, lead ? default_run_name(o, cfg.name) : "");
  const fs::path run_dir = fs::path(o.logs) / o.name, ckpt_dir = run_dir / "checkpoints";
  if (lead) {
    fs::create_directories(ckpt_dir);
    nlohmann::json params_json = {{"options", o.to_json()},      {"model_config", cfg.to_json()}, {"world_size", world},
                                  {"device", dist::device_name(dev)}, {"precision", precision}};
    if (dev == Device::CUDA) params_json["gpu"] = cuda::device_name();
    write_json_atomic((run_dir / "params.json").string(), params_json);
  }
  comm->barrier();

  // ---- data --------------------------------------------------------------------------
  LoaderOptions lo;
  lo.dir = o.train_data;
  lo.rank = rank;
  lo.world = world;
  lo.batch_size = o.batch_size;
  lo.seed = o.seed;
  lo.image_size = static_cast<int>(cfg.vision.image_size);
  lo.threads = o.workers;
  lo.resampled = o.dataset_resampled;
  lo.epoch_samples = o.train_num_samples;
  lo.skip_bad_shards = o.skip_bad_shards;
  lo.scale_min = o.aug_scale_min;
  lo.scale_max = o.aug_scale_max;
  ShardLoader loader(lo);

  // ---- optimiser and gradient synchronisation ------------------------------------------
  AdamWOptions ao;
  ao.lr = o.lr, ao.beta1 = o.beta1, ao.beta2 = o.beta2, ao.eps = o.eps, ao.weight_decay = o.wd;
  dist::BucketOptions bo;
  bo.bucket_bytes = static_cast<size_t>(o.bucket_mb * (1 << 20));
  bo.shard = o.zero1;
  dist::GradientBucketer grads(tensor_comm, named, bo);
  std::unique_ptr<AdamW> adamw;
  std::unique_ptr<dist::Zero1AdamW> zero;
  if (o.zero1) zero = std::make_unique<dist::Zero1AdamW>(grads, ao);
  else adamw = std::make_unique<AdamW>(named, ao);
  const LossContext loss_ctx = dist::make_loss_context(tensor_comm, comm);
  const LossWeights weights{o.coca_contrastive_loss_weight, o.coca_caption_loss_weight};
  const LrSchedule schedule = parse_lr_schedule(o.lr_scheduler);

  // ---- schedule ----------------------------------------------------------------------
  const int64_t steps_per_epoch = loader.batches_per_epoch(0) / o.accum_freq;
  COCA_CHECK(steps_per_epoch > 0, "--train-data ", o.train_data, ": ", loader.batches_per_epoch(0),
             " batches per rank per epoch are fewer than --accum-freq ", o.accum_freq,
             " (lower --batch-size or use more data)");
  int64_t total_steps = steps_per_epoch * o.epochs;
  if (o.max_steps > 0) total_steps = std::min(total_steps, o.max_steps);
  const int64_t cooldown = static_cast<int64_t>(o.epochs_cooldown) * steps_per_epoch;

  // ---- resume ------------------------------------------------------------------------
  int64_t step = 0, samples_seen = 0, skipped_total = 0;
  int64_t epoch = 0;
  if (!o.resume.empty()) {
    const std::string dir = resolve_resume(o.resume, run_dir.string());
    nlohmann::json st = read_json(dir + "/state.json");
    COCA_CHECK(st.at("world_size").get<int>() == world, "--resume ", dir, ": saved with ", st.at("world_size").get<int>(),
               " ranks, resumed with ", world, " (the data order depends on the world size)");
    load_weights(model, dir + "/model.safetensors");
    const std::string opt_file = dir + "/optimizer.safetensors";
    if (zero) zero->load_state_dict(load_safetensors(opt_file), opt_file);  // this rank's slices
    else restore_optimizer(*adamw, load_safetensors(opt_file), opt_file);
    step = st.at("step").get<int64_t>();
    epoch = st.at("epoch").get<int64_t>();
    samples_seen = st.at("samples_seen").get<int64_t>();
    skipped_total = st.value("nonfinite_skipped", int64_t{0});
    loader.restore(LoaderState::from_json(st.at("ranks").at(rank).at("loader")));
    if (lead) std::printf("resumed from %s at step %lld (epoch %lld)\n", dir.c_str(), (long long)step, (long long)epoch);
  } else {
    loader.start_epoch(0);
  }

  std::unique_ptr<MetricsFile> metrics_file;
  if (lead) metrics_file = std::make_unique<MetricsFile>((run_dir / "metrics.jsonl").string());
  auto write_metrics = [&](const nlohmann::json& record) {
    if (metrics_file) metrics_file->write(record);
  };
  if (lead)
    std::printf("coca-train: %s, %lld parameters, %d rank(s) on %s (%s), global batch %d, %lld steps (%lld per epoch)\n",
                cfg.name.c_str(), (long long)model.parameter_count(), world,
                dev == Device::CUDA ? str_cat("GPU ", cuda::device_name()).c_str()
                                    : str_cat("CPU x ", threads, " threads").c_str(),
                precision.c_str(), o.batch_size * world * o.accum_freq, (long long)total_steps,
                (long long)steps_per_epoch);
  std::fflush(stdout);

  auto save = [&](const char* why) {
    const std::string name = checkpoint_name(step);
    const fs::path tmp = ckpt_dir / (name + ".tmp");
    if (lead) fs::create_directories(tmp);
    comm->barrier();
    LoaderState ls = loader.state();
    nlohmann::json mine = {{"rank", rank}, {"loader", ls.to_json()}};
    auto all = gather_strings(*comm, mine.dump());
    // ZeRO-1 assembles the whole state on every rank (a collective); either way the file has
    // AdamW's layout, so a checkpoint resumes with or without --zero1.
    NamedTensors opt_state = zero ? zero->state_dict(named) : lead ? optimizer_tensors(*adamw) : NamedTensors{};
    if (lead) {
      save_weights(model, (tmp / "model.safetensors").string());
      save_safetensors((tmp / "optimizer.safetensors").string(), opt_state);
      nlohmann::json st = {{"format", 1},
                           {"step", step},
                           {"epoch", epoch},
                           {"samples_seen", samples_seen},
                           {"nonfinite_skipped", skipped_total},
                           {"world_size", world},
                           {"model_config", cfg.to_json()},
                           {"options", o.to_json()},
                           {"command_line", o.command_line},
                           {"ranks", nlohmann::json::array()}};
      for (auto& s : all) st["ranks"].push_back(nlohmann::json::parse(s));
      write_json_atomic((tmp / "state.json").string(), st);
      publish_checkpoint(ckpt_dir.string(), name, o.keep_checkpoints);
      std::printf("saved %s (%s)\n", (ckpt_dir / name).string().c_str(), why);
      std::fflush(stdout);
    }
    comm->barrier();
  };

  auto evaluate = [&]() {
    if (o.val_data.empty()) return;
    eval::ZeroShotOptions zo;
    zo.data = o.val_data;
    zo.templates_file = o.zeroshot_templates;
    zo.tokenizer = eval::resolve_tokenizer(o.tokenizer, loader.index(), o.train_data, "--val-data zero-shot");
    zo.rank = rank;
    zo.world = world;
    auto t0 = Clock::now();
    eval::ZeroShotResult r = eval::zeroshot(model, zo, eval::mpi_reducer(*comm));
    if (lead) {
      std::printf("zero-shot %s: top-1 %.2f%%  top-5 %.2f%%  mean per class %.2f%%  (%lld images, %lld classes, %s)\n",
                  o.val_data.c_str(), 100 * r.top1, 100 * r.top5, 100 * r.mean_per_class, (long long)r.images,
                  (long long)r.classes, format_duration(seconds_since(t0)).c_str());
      write_metrics({{"step", step}, {"epoch", epoch}, {"zeroshot_top1", r.top1}, {"zeroshot_top5", r.top5},
                     {"zeroshot_mean_per_class", r.mean_per_class}});
    }
  };

  // ---- the loop ----------------------------------------------------------------------
  const auto t_start = Clock::now();
  auto t_log = Clock::now();
  int64_t log_samples = 0, consecutive_nonfinite = 0;
  double log_loss = 0, log_con = 0, log_cap = 0;
  int log_count = 0;
  const double train_flops = 3.0 * forward_flops_per_sample(cfg);
  const int64_t start_step = step;
  int exit_code = 0;
  Batch batch;
  while (step < total_steps) {
    const double lr = learning_rate(schedule, o.lr, step, o.warmup, total_steps, cooldown, o.lr_cooldown_end);
    double loss_sum = 0, con_sum = 0, cap_sum = 0;
    for (int k = 0; k < o.accum_freq; ++k) {
      COCA_CHECK(loader.next(batch), "rank ", rank, ": the loader ran out of batches at step ", step,
                 " of epoch ", epoch, " (index and loader disagree)");
      COCA_CHECK(batch.tokens.defined(), "--train-data ", o.train_data,
                 ": shards have no 'tokens' (make them with coca-shard --tokenizer)");
      COCA_CHECK(batch.tokens.size(1) == cfg.text.context_length, "--train-data ", o.train_data, ": tokens of length ",
                 batch.tokens.size(1), " but the model's context_length is ", cfg.text.context_length);
      SuspendHooks quiet(params, k + 1 < o.accum_freq);
      const Tensor images = batch.images.to(dev), tokens = batch.tokens.to(dev);  // pinned staging on cuda
      CocaOutput out = model.forward(images, tokens);
      CocaLosses l = coca_loss(out, tokens, cfg.text.pad_id, weights, loss_ctx);
      Tensor loss = mul_scalar(l.total, 1.0 / o.accum_freq);
      if (step == o.debug_nonfinite_step) loss = mul_scalar(loss, std::nan(""));
      loss.backward();
      loss_sum += loss.item() * o.accum_freq;
      con_sum += l.contrastive.item();
      cap_sum += l.caption.item();
    }
    grads.finish();
    const double grad_norm = zero ? zero->clip_grad_norm(o.grad_clip_norm) : clip_grad_norm(params, o.grad_clip_norm);
    const bool finite_here = std::isfinite(loss_sum) && std::isfinite(grad_norm);
    const bool finite = comm->sum(finite_here ? 0.0 : 1.0) == 0.0;
    if (finite) {
      if (zero) zero->step(lr);
      else adamw->step(lr);
      model.clamp_logit_scale();
      consecutive_nonfinite = 0;
    } else {
      ++skipped_total;
      ++consecutive_nonfinite;
      if (lead)
        std::fprintf(stderr, "warning: rank %d: step %lld has a non-finite loss or gradient; skipped (%lld so far)\n",
                     rank, (long long)step, (long long)skipped_total);
      if (lead) write_metrics({{"step", step}, {"nonfinite_skipped", skipped_total}});
      COCA_CHECK(consecutive_nonfinite < o.max_nonfinite, consecutive_nonfinite,
                 " non-finite steps in a row (limit --max-nonfinite ", o.max_nonfinite,
                 "); stopping. The last checkpoint holds finite weights.");
    }
    for (Tensor& p : params) p.zero_grad();
    ++step;
    const int64_t step_samples = static_cast<int64_t>(o.batch_size) * world * o.accum_freq;
    samples_seen += step_samples;
    log_samples += step_samples;
    if (finite) {
      log_loss += comm->sum(loss_sum) / world;
      log_con += comm->sum(con_sum / o.accum_freq) / world;
      log_cap += comm->sum(cap_sum / o.accum_freq) / world;
      ++log_count;
    }
    const bool epoch_end = step % steps_per_epoch == 0;
    if (epoch_end) ++epoch;

    if (step % o.log_every_n_steps == 0 || step == total_steps) {
      const double dt = seconds_since(t_log);
      const double rate = log_samples / std::max(dt, 1e-9);
      const double elapsed = seconds_since(t_start);
      const double eta = (total_steps - step) * elapsed / std::max<int64_t>(step - start_step, 1);
      if (lead && log_count > 0) {
        const double loss = log_loss / log_count, con = log_con / log_count, cap = log_cap / log_count;
        const double scale = std::exp(model.logit_scale.item());
        std::printf("step %lld/%lld (%.0f%%) epoch %lld | loss %.4f (contrastive %.4f, caption %.4f) | lr %.3g | "
                    "scale %.2f | %.1f samples/s (%.1f/rank) | ETA %s\n",
                    (long long)step, (long long)total_steps, 100.0 * step / total_steps, (long long)epoch, loss, con,
                    cap, lr, scale, rate, rate / world, format_duration(eta).c_str());
        std::fflush(stdout);
        write_metrics({{"step", step}, {"epoch", epoch}, {"samples_seen", samples_seen}, {"loss", loss},
                       {"contrastive_loss", con}, {"caption_loss", cap}, {"lr", lr}, {"logit_scale", scale},
                       {"grad_norm", grad_norm}, {"samples_per_s", rate}, {"samples_per_s_per_rank", rate / world},
                       {"gflops_per_s", rate * train_flops / 1e9}, {"wait_comm_s", grads.last_wait_seconds()},
                       {"elapsed_s", elapsed}});
      }
      t_log = Clock::now();
      log_samples = 0;
      log_loss = log_con = log_cap = 0;
      log_count = 0;
    }

    const bool time_up = o.max_minutes > 0 && seconds_since(t_start) > o.max_minutes * 60;
    const bool stop = comm->sum((g_stop_signal || (lead && time_up)) ? 1.0 : 0.0) > 0;
    const bool done = step >= total_steps;
    if (epoch_end && !done) {
      if (o.zeroshot_frequency > 0 && epoch % o.zeroshot_frequency == 0) evaluate();
      loader.start_epoch(epoch);
    }
    if (stop) {
      const bool by_signal = comm->sum(g_stop_signal ? 1.0 : 0.0) > 0;
      save(by_signal ? "stop requested by signal" : "time limit");
      if (lead)
        std::printf("stopped at step %lld: %s; resume with --resume latest --name %s\n", (long long)step,
                    by_signal ? "signal received" : "--max-minutes reached", o.name.c_str());
      break;
    }
    if (done || (o.save_every_n_steps > 0 && step % o.save_every_n_steps == 0) ||
        (epoch_end && o.save_frequency > 0 && epoch % o.save_frequency == 0))
      save(done ? "end of training" : "periodic");
  }
  if (step >= total_steps && !o.val_data.empty()) evaluate();
  comm->barrier();
  if (lead)
    std::printf("done: %lld steps, %lld samples, %lld non-finite steps skipped, %s; logs in %s\n", (long long)step,
                (long long)samples_seen, (long long)skipped_total, format_duration(seconds_since(t_start)).c_str(),
                run_dir.string().c_str());
  return exit_code;
}

}  // namespace coca::train
