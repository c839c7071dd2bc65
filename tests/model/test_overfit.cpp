// coca_tiny memorises 16 random image-text pairs: caption loss < 0.05 and contrastive top-1
// 100% in both directions within a bounded number of AdamW steps.
#include <gtest/gtest.h>

#include <cmath>

#include "coca/loss/coca_loss.h"
#include "coca/optim/adamw.h"
#include "../model/micro.h"

using namespace coca;

TEST(Overfit, CocaTinyMemorises16Pairs) {
  CoCa model(CocaConfig::from_file(std::string(COCA_CONFIG_DIR) + "/coca_tiny.json"));
  model.initialize(7);
  Generator gen(3);
  const int64_t B = 16, L = model.config().text.context_length, V = model.config().text.vocab_size;
  Tensor images = Tensor::randn({B, 3, 64, 64}, gen);
  std::vector<int> lengths;
  for (int i = 0; i < B; ++i) lengths.push_back(6 + static_cast<int>(gen.below(10)));
  Tensor tokens = test::micro_tokens(lengths, L, V, gen);
  AdamWOptions o;
  o.lr = 1e-3, o.weight_decay = 0.0;
  AdamW opt(model.named_parameters(), o);
  const int max_steps = 150;
  double caption = 1e9;
  int top1_i2t = 0, top1_t2i = 0, step = 0;
  for (; step < max_steps; ++step) {
    auto out = model.forward(images, tokens);
    auto l = coca_loss(out, tokens, 0);
    caption = l.caption.item();
    {
      // contrastive accuracy on the current forward
      NoGradGuard ng;
      auto sim = matmul(out.image_features, out.text_features.t()).to_double_vector();
      top1_i2t = top1_t2i = 0;
      for (int64_t i = 0; i < B; ++i) {
        int64_t bi = 0, bt = 0;
        for (int64_t j = 0; j < B; ++j) {
          if (sim[i * B + j] > sim[i * B + bi]) bi = j;
          if (sim[j * B + i] > sim[bt * B + i]) bt = j;
        }
        top1_i2t += bi == i;
        top1_t2i += bt == i;
      }
    }
    if (caption < 0.05 && top1_i2t == B && top1_t2i == B) break;
    l.total.backward();
    opt.step(learning_rate(LrSchedule::Cosine, o.lr, step, 10, max_steps));
    opt.zero_grad();
    model.clamp_logit_scale();
  }
  EXPECT_LT(caption, 0.05) << "after " << step << " steps";
  EXPECT_EQ(top1_i2t, B);
  EXPECT_EQ(top1_t2i, B);
  std::printf("memorised in %d steps (caption loss %.4f)\n", step, caption);
}
