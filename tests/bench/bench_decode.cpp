// Caption decoding throughput: generated tokens/s with the key/value cache (CaptionDecoder)
// against recomputing the whole text tower and decoder for every new token
// (uncached_next_logits), on a random-initialised model. Both decode greedily the same number
// of tokens per image (end-of-text is never chosen, so every row runs the full length), and
// the program checks that both choose the same tokens.
//
//   ./build/tests/bench/bench_decode [--model coca_tiny] [--batch 8] [--tokens 0 (= L - 1)] [--reps 3]
//
// The image tower is run once, outside the timings.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "coca/eval/generate.h"

using namespace coca;
using Clock = std::chrono::steady_clock;

namespace {

int32_t pick(const float* logits, int64_t V, int32_t sot, int32_t eot) {
  int32_t best = -1;
  for (int32_t v = 0; v < V; ++v)
    if (v != sot && v != eot && (best < 0 || logits[v] > logits[best])) best = v;
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_name = "coca_tiny";
  int batch = 8, tokens = 0, reps = 3;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--model" && i + 1 < argc) model_name = argv[++i];
    else if (a == "--batch" && i + 1 < argc) batch = std::atoi(argv[++i]);
    else if (a == "--tokens" && i + 1 < argc) tokens = std::atoi(argv[++i]);
    else if (a == "--reps" && i + 1 < argc) reps = std::atoi(argv[++i]);
    else {
      std::printf("usage: bench_decode [--model NAME] [--batch N] [--tokens N] [--reps N]\n");
      return a == "--help" ? 0 : 2;
    }
  }
  try {
    CocaConfig cfg = CocaConfig::from_file(find_model_config(model_name));
    CoCa model(cfg);
    NoGradGuard no_grad;
    const int64_t L = cfg.text.context_length, V = cfg.multimodal.vocab_size, S = cfg.vision.image_size;
    if (tokens <= 0 || tokens > L - 1) tokens = static_cast<int>(L - 1);
    const int32_t sot = static_cast<int32_t>(V - 2), eot = static_cast<int32_t>(V - 1);
    Generator gen(1);
    Tensor image_tokens = model.visual->forward(Tensor::randn({batch, 3, S, S}, gen)).tokens.contiguous();
    std::vector<int64_t> rows(batch);
    for (int i = 0; i < batch; ++i) rows[i] = i;

    auto cached = [&](std::vector<std::vector<int32_t>>& out) {
      eval::CaptionDecoder dec(model);
      dec.start(image_tokens, rows);
      std::vector<int32_t> next(batch, sot);
      out.assign(batch, {});
      for (int t = 0; t < tokens; ++t) {
        Tensor l = dec.step(next);
        for (int r = 0; r < batch; ++r) out[r].push_back(next[r] = pick(l.data<float>() + r * V, V, sot, eot));
      }
    };
    auto uncached = [&](std::vector<std::vector<int32_t>>& out) {
      std::vector<std::vector<int32_t>> prefixes(batch, std::vector<int32_t>{sot});
      for (int t = 0; t < tokens; ++t) {
        Tensor l = eval::uncached_next_logits(model, prefixes, image_tokens);
        for (int r = 0; r < batch; ++r) prefixes[r].push_back(pick(l.data<float>() + r * V, V, sot, eot));
      }
      out.clear();
      for (auto& p : prefixes) out.emplace_back(p.begin() + 1, p.end());
    };
    auto time_best = [&](auto&& fn, std::vector<std::vector<int32_t>>& out) {
      fn(out);  // warm-up
      double best = 1e300;
      for (int r = 0; r < reps; ++r) {
        auto t0 = Clock::now();
        fn(out);
        best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
      }
      return best;
    };
    std::vector<std::vector<int32_t>> a, b;
    const double tc = time_best(cached, a), tu = time_best(uncached, b);
    const double n = static_cast<double>(batch) * tokens;
    const char* omp = std::getenv("OMP_NUM_THREADS");
    std::printf("%s, batch %d, %d tokens per image (context %lld), OMP_NUM_THREADS=%s, best of %d\n",
                model_name.c_str(), batch, tokens, (long long)L, omp ? omp : "(unset)", reps);
    std::printf("  cached   %9.1f tokens/s  (%.3f s)\n", n / tc, tc);
    std::printf("  uncached %9.1f tokens/s  (%.3f s)\n", n / tu, tu);
    std::printf("  speed-up %.2fx; same tokens: %s\n", tu / tc, a == b ? "yes" : "NO");
    return a == b ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_decode: %s\n", e.what());
    return 1;
  }
}
