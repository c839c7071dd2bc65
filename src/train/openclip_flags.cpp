#include "coca/train/openclip_flags.h"

#include <cmath>
#include <cstdlib>

#include "coca/tensor/error.h"

namespace coca::train {

namespace po = boost::program_options;

namespace {

enum class Arity { Switch, Value, Values };
enum class Rule { Same, Ignored, Refused, Mapped };

struct Flag {
  const char* name;
  Arity arity;
  Rule rule;
  const char* why;  // Ignored: why it means nothing here; Refused: the nearest supported choice
};

// Every flag of params.py (and the older --horovod, --torchscript, --trace) that coca-train does
// not declare itself.
const Flag kFlags[] = {
    // the loss
    {"local-loss", Arity::Switch, Rule::Same, ""},
    {"gather-with-grad", Arity::Switch, Rule::Same, ""},
    {"loss-dist-impl", Arity::Value, Rule::Ignored, "the loss has one implementation: local rows against gathered columns, with gradient"},
    {"siglip", Arity::Switch, Rule::Refused, "the softmax contrastive loss (the default, as in CoCa)"},
    {"distill-model", Arity::Value, Rule::Refused, "train without distillation"},
    {"distill-pretrained", Arity::Value, Rule::Refused, "train without distillation"},
    // data: coca-train reads shard sets made by data_tools/coca-shard
    {"dataset-type", Arity::Value, Rule::Ignored, "--train-data is a coca-shard set, whatever it was made from"},
    {"csv-separator", Arity::Value, Rule::Ignored, "CSV tables are read by coca-shard (its --csv-separator)"},
    {"csv-img-key", Arity::Value, Rule::Ignored, "CSV tables are read by coca-shard (its --csv-img-key)"},
    {"csv-caption-key", Arity::Value, Rule::Ignored, "CSV tables are read by coca-shard (its --csv-caption-key)"},
    {"image-key", Arity::Value, Rule::Ignored, "WebDataset tars are read by coca-shard"},
    {"text-key", Arity::Value, Rule::Ignored, "WebDataset tars are read by coca-shard"},
    {"json-text-key", Arity::Value, Rule::Ignored, "WebDataset tars are read by coca-shard"},
    {"imagenet-val", Arity::Value, Rule::Ignored, "zero-shot runs on --zeroshot-data, a coca-shard --format folder set (or coca-eval zeroshot)"},
    {"imagenet-v2", Arity::Value, Rule::Ignored, "zero-shot runs on --zeroshot-data, a coca-shard --format folder set (or coca-eval zeroshot)"},
    {"cache-dir", Arity::Value, Rule::Ignored, "nothing is downloaded"},
    {"length-bucketing", Arity::Switch, Rule::Ignored, "each batch is trimmed to its captions' lengths anyway, without reordering the data"},
    {"bucket-pool", Arity::Value, Rule::Ignored, "no length bucketing of the data order"},
    {"bucket-chunk", Arity::Value, Rule::Ignored, "no length bucketing of the data order"},
    {"text-pad-multiple", Arity::Value, Rule::Ignored, "captions are trimmed per batch; no compile shapes to bound"},
    {"naflex-pad-multiple", Arity::Value, Rule::Ignored, "no NaFlex"},
    // audio models
    {"audio-ext", Arity::Value, Rule::Ignored, "no audio models"},
    {"pretrained-audio", Arity::Value, Rule::Refused, "an image-text model (no audio tower here)"},
    {"audio-fill", Arity::Value, Rule::Ignored, "no audio models"},
    {"audio-trunc", Arity::Value, Rule::Ignored, "no audio models"},
    {"audio-fusion", Arity::Switch, Rule::Ignored, "no audio models"},
    {"audio-int16-normalize", Arity::Switch, Rule::Ignored, "no audio models"},
    {"audio-zeroshot-dataset", Arity::Value, Rule::Ignored, "no audio models"},
    {"audio-zeroshot-split", Arity::Value, Rule::Ignored, "no audio models"},
    {"audio-zeroshot-audio-key", Arity::Value, Rule::Ignored, "no audio models"},
    {"audio-zeroshot-target-key", Arity::Value, Rule::Ignored, "no audio models"},
    {"audio-zeroshot-class-key", Arity::Value, Rule::Ignored, "no audio models"},
    {"audio-zeroshot-template", Arity::Values, Rule::Ignored, "no audio models"},
    {"audio-zeroshot-workers", Arity::Value, Rule::Ignored, "no audio models"},
    {"audio-zeroshot-multiprocessing-context", Arity::Value, Rule::Ignored, "no audio models"},
    {"audio-multiprocessing-context", Arity::Value, Rule::Ignored, "no audio models"},
    {"audio-layer-decay", Arity::Value, Rule::Ignored, "no audio models"},
    // the model
    {"pretrained-image", Arity::Switch, Rule::Refused, "--pretrained FILE (OpenCLIP-named weights of the whole model)"},
    {"force-context-length", Arity::Value, Rule::Refused, "--model-config FILE with text_cfg.context_length changed"},
    {"force-image-size", Arity::Values, Rule::Refused, "--model-config FILE with vision_cfg.image_size changed"},
    {"force-quick-gelu", Arity::Switch, Rule::Refused, "the model config's activation (GELU)"},
    {"force-custom-text", Arity::Switch, Rule::Ignored, "the towers are always separate modules"},
    {"use-bnb-linear", Arity::Value, Rule::Refused, "float32 weights with --precision amp_bf16 on a GPU"},
    {"use-naflex", Arity::Switch, Rule::Refused, "fixed-size images (the model config's image_size)"},
    {"force-naflex-vision", Arity::Switch, Rule::Refused, "the ViT of the model config"},
    {"naflex-num-train-image-tokens", Arity::Value, Rule::Refused, "--train-num-samples"},
    {"naflex-patch-sizes", Arity::Values, Rule::Refused, "the model config's patch_size"},
    {"naflex-patch-size-probs", Arity::Values, Rule::Refused, "the model config's patch_size"},
    {"naflex-seq-lens", Arity::Values, Rule::Refused, "the model config's image_size"},
    {"naflex-seq-len-probs", Arity::Values, Rule::Refused, "the model config's image_size"},
    {"naflex-max-tokens-per-batch", Arity::Value, Rule::Refused, "--batch-size"},
    {"naflex-max-text-tokens", Arity::Value, Rule::Refused, "the model config's context_length"},
    {"naflex-batch-divisor", Arity::Value, Rule::Refused, "--batch-size"},
    {"naflex-loss-scale", Arity::Value, Rule::Refused, "fixed batches (--batch-size)"},
    // optimisation
    {"opt", Arity::Value, Rule::Mapped, "--opt adamw (coca-train's optimizer; --beta1, --beta2, --eps, --wd)"},
    {"opt-kwargs", Arity::Values, Rule::Refused, "--opt adamw with --beta1, --beta2, --eps and --wd"},
    {"opt-fallback-list", Arity::Values, Rule::Refused, "--opt adamw for every parameter"},
    {"momentum", Arity::Value, Rule::Ignored, "used by timm's optimizers only; coca-train runs AdamW"},
    {"text-layer-decay", Arity::Value, Rule::Mapped, "one learning rate for all (or --lock-text with --lock-text-unlocked-layers)"},
    {"image-layer-decay", Arity::Value, Rule::Mapped, "one learning rate for all (or --lock-image with --lock-image-unlocked-groups)"},
    {"visual-layer-decay", Arity::Value, Rule::Mapped, "one learning rate for all (or --lock-image with --lock-image-unlocked-groups)"},
    {"wd-exclude", Arity::Values, Rule::Refused, "the default rule (no decay for gains, biases, embeddings and logit_scale)"},
    {"text-pooler-own-group", Arity::Switch, Rule::Ignored, "there are no layer-wise lr groups (and --lock-text groups are OpenCLIP's default ones)"},
    {"skip-scheduler", Arity::Switch, Rule::Mapped, ""},
    {"lr-cooldown-power", Arity::Value, Rule::Mapped, "--lr-cooldown-power 1 (a linear cooldown)"},
    {"use-bn-sync", Arity::Switch, Rule::Ignored, "the models have no batch norm"},
    // checkpoints and logging
    {"save-most-recent", Arity::Switch, Rule::Same, ""},  // checkpoints/latest always names the newest
    {"delete-previous-checkpoint", Arity::Switch, Rule::Mapped, ""},
    {"log-local", Arity::Switch, Rule::Ignored, "rank 0 writes the logs of the whole job"},
    {"log-metric-every-n-steps", Arity::Value, Rule::Ignored, "metrics.jsonl gets a record every --log-every-n-steps"},
    {"train-loss-ema-samples", Arity::Value, Rule::Ignored, "the logged loss is the mean over each logging window"},
    {"wandb-notes", Arity::Value, Rule::Ignored, "Weights & Biases is not supported (metrics.jsonl, TensorBoard)"},
    {"wandb-project-name", Arity::Value, Rule::Ignored, "Weights & Biases is not supported (metrics.jsonl, TensorBoard)"},
    {"remote-sync", Arity::Value, Rule::Refused, "--logs on a filesystem every node shares, copied by a job of its own"},
    {"remote-sync-frequency", Arity::Value, Rule::Ignored, "no --remote-sync"},
    {"remote-sync-protocol", Arity::Value, Rule::Ignored, "no --remote-sync"},
    {"copy-codebase", Arity::Switch, Rule::Ignored, "a compiled program runs; nothing to copy"},
    {"debug", Arity::Switch, Rule::Ignored, "the log is the same either way"},
    {"val-retrieval-chunk-size", Arity::Value, Rule::Ignored, "validation retrieval is scored in float32 over the gathered features"},
    {"val-retrieval-precision", Arity::Value, Rule::Ignored, "validation retrieval is scored in float32"},
    {"image-interpolation", Arity::Value, Rule::Mapped, "--aug-cfg interpolation=bilinear|bicubic"},
    {"image-resize-mode", Arity::Value, Rule::Ignored, "evaluation resizes the shortest side and centre-crops (coca-eval)"},
    // compilation and the launcher
    {"torchcompile", Arity::Switch, Rule::Ignored, "a compiled program: nothing to compile at run time"},
    {"torchcompile-strategy", Arity::Value, Rule::Ignored, "a compiled program: nothing to compile at run time"},
    {"torchcompile-backend", Arity::Value, Rule::Ignored, "a compiled program: nothing to compile at run time"},
    {"torchcompile-mode", Arity::Value, Rule::Ignored, "a compiled program: nothing to compile at run time"},
    {"torchscript", Arity::Switch, Rule::Ignored, "a compiled program: nothing to script"},
    {"trace", Arity::Switch, Rule::Ignored, "a compiled program: nothing to trace"},
    {"dist-url", Arity::Value, Rule::Ignored, "mpirun starts the ranks and connects them"},
    {"dist-backend", Arity::Value, Rule::Ignored, "MPI between CPU ranks, NCCL between GPUs, chosen by --device"},
    {"horovod", Arity::Switch, Rule::Ignored, "mpirun starts the ranks and connects them"},
    {"ddp-static-graph", Arity::Switch, Rule::Ignored, "gradients are all-reduced in buckets as backward produces them"},
    {"no-set-device-rank", Arity::Switch, Rule::Ignored, "each rank takes GPU <local rank> among those visible"},
    {"fsdp", Arity::Switch, Rule::Refused, "--zero1 (optimizer state sharded over ranks; weights replicated)"},
    {"fsdp-no-reshard-after-forward", Arity::Switch, Rule::Ignored, "no FSDP"},
    {"fsdp-offload-cpu", Arity::Switch, Rule::Ignored, "no FSDP"},
    {"fsdp-checkpoint", Arity::Value, Rule::Ignored, "no FSDP: checkpoints are one directory of safetensors"},
};

std::string value_of(const po::variables_map& vm, const Flag& f) {
  if (f.arity == Arity::Switch) return "";
  if (f.arity == Arity::Value) return vm[f.name].as<std::string>();
  std::string s;
  for (const std::string& w : vm[f.name].as<std::vector<std::string>>()) s += (s.empty() ? "" : " ") + w;
  return s;
}

bool given(const po::variables_map& vm, const char* name) { return vm.count(name) && !vm[name].defaulted(); }

double number(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  COCA_CHECK(end != v.c_str() && *end == '\0' && std::isfinite(x), "--", flag, " must be a number, got '", v, "'");
  return x;
}

}  // namespace

void add_openclip_flags(po::options_description& d) {
  for (const Flag& f : kFlags) {
    if (f.arity == Arity::Switch) d.add_options()(f.name, po::bool_switch(), "");
    else if (f.arity == Arity::Value) d.add_options()(f.name, po::value<std::string>(), "");
    else d.add_options()(f.name, po::value<std::vector<std::string>>()->multitoken()->zero_tokens(), "");
  }
}

void apply_openclip_flags(const po::variables_map& vm, TrainOptions& o) {
  for (const Flag& f : kFlags) {
    if (!vm.count(f.name)) continue;
    if (f.arity == Arity::Switch && !vm[f.name].as<bool>()) continue;
    const std::string flag = std::string("--") + f.name, v = value_of(vm, f);
    const std::string shown = v.empty() ? flag : flag + " " + v;
    switch (f.rule) {
      case Rule::Same: break;
      case Rule::Ignored: o.notes.push_back(str_cat(shown, " (OpenCLIP) is ignored: ", f.why)); break;
      case Rule::Refused:
        throw Error(str_cat(shown, " (OpenCLIP) is not supported: it would change what is trained; the nearest "
                            "choice here is ", f.why));
      case Rule::Mapped: {
        const std::string name = f.name;
        if (name == "opt") {
          COCA_CHECK(v == "adamw", shown, " (OpenCLIP) is not supported: the nearest choice here is ", f.why);
        } else if (name.ends_with("layer-decay")) {
          COCA_CHECK(number(name, v) == 1.0, shown, " (OpenCLIP) is not supported: it would change what is trained; "
                     "the nearest choice here is ", f.why);
        } else if (name == "lr-cooldown-power") {
          COCA_CHECK(number(name, v) == 1.0, shown, " (OpenCLIP) is not supported: the nearest choice here is ",
                     f.why);
        } else if (name == "skip-scheduler") {  // OpenCLIP: the lr stays at --lr from the first step
          o.lr_scheduler = "const";
          o.warmup = 0;
        } else if (name == "delete-previous-checkpoint") {
          o.keep_checkpoints = 1;
        } else if (name == "image-interpolation") {
          COCA_CHECK(v == "bilinear" || v == "bicubic", shown,
                     " (OpenCLIP) is not supported: the nearest choice here is ", f.why);
          o.interpolation = v;
        }
        break;
      }
    }
  }
  // OpenCLIP's --zeroshot-frequency evaluates on --imagenet-val; with that ignored and no
  // --zeroshot-data, the frequency goes with it.
  if (vm.count("imagenet-val") && o.zeroshot_data.empty() && o.zeroshot_frequency > 0) {
    o.notes.push_back(str_cat("--zeroshot-frequency ", o.zeroshot_frequency,
                              " is ignored with --imagenet-val: give --zeroshot-data for zero-shot during training"));
    o.zeroshot_frequency = 0;
  }
  // --precision in OpenCLIP's spellings: the same thing under another name, or refused.
  if (o.precision == "amp_bfloat16") o.precision = "amp_bf16";
  COCA_CHECK(o.precision != "amp" && o.precision != "fp16" && o.precision != "pure_fp16", "--precision ", o.precision,
             " (OpenCLIP) is not supported: float16 needs loss scaling, which coca-train does not do; the nearest "
             "choice here is --precision amp_bf16 (bf16 operands, float32 accumulation and weights)");
  COCA_CHECK(o.precision != "bf16" && o.precision != "pure_bf16", "--precision ", o.precision,
             " (OpenCLIP) is not supported: weights and optimizer state stay float32; the nearest choice here is "
             "--precision amp_bf16");
}

std::string openclip_default_differences(const po::variables_map& vm) {
  struct Default {
    const char* flag;
    const char* ours;
    const char* theirs;
  };
  static const Default kDefaults[] = {
      {"epochs", "1", "32"},
      {"warmup", "100", "10000"},
      {"zeroshot-frequency", "0 (only at the end)", "2"},
      {"workers", "2", "4"},
      {"log-every-n-steps", "10", "100"},
      {"model", "coca_tiny", "RN50"},
      {"precision", "auto (amp_bf16 on a GPU, fp32 on the CPU)", "amp_bf16"},
      {"device", "auto", "cuda"},
      {"report-to", "jsonl (metrics.jsonl)", "none"},
      {"keep-checkpoints", "3", "every epoch's"},
  };
  std::string line;
  for (const Default& d : kDefaults)
    if (!given(vm, d.flag) && !(std::string(d.flag) == "keep-checkpoints" && given(vm, "delete-previous-checkpoint")))
      line += str_cat(line.empty() ? "" : ", ", "--", d.flag, " ", d.ours, " (OpenCLIP: ", d.theirs, ")");
  return line.empty() ? "" : "defaults that differ from OpenCLIP's and were not set: " + line;
}

}  // namespace coca::train
