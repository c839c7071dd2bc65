#include "coca/eval/zeroshot.h"

#include <cstdio>

#include "coca/eval/common.h"

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>

#include "coca/data/bundled.h"
#include "coca/data/loader.h"
#include "coca/data/tokenizer.h"
#include "coca/dist/check.h"
#include "coca/dist/mpi.h"

namespace coca::eval {

namespace fs = std::filesystem;

Reducer local_reducer() {
  return {[](std::vector<double>&) {}, [](const std::vector<int64_t>& v) { return v; },
          [](const std::vector<float>& v) { return v; }};
}

// Every rank's `v`, concatenated in rank order (counts must fit an int, as MPI requires).
template <typename T>
static std::vector<T> all_gather_v(const std::vector<T>& v, MPI_Datatype type, MPI_Comm c, int world) {
  COCA_CHECK(v.size() < static_cast<size_t>(INT32_MAX), "all-gather: ", v.size(), " elements exceed MPI's int count");
  const int n = static_cast<int>(v.size());
  std::vector<int> sizes(world), displs(world);
  COCA_MPI_CHECK(MPI_Allgather(&n, 1, MPI_INT, sizes.data(), 1, MPI_INT, c));
  int64_t total = 0;
  for (int i = 0; i < world; ++i) {
    COCA_CHECK(total + sizes[i] < INT32_MAX, "all-gather: ", total + sizes[i], " elements exceed MPI's int count");
    displs[i] = static_cast<int>(total), total += sizes[i];
  }
  std::vector<T> out(total);
  COCA_MPI_CHECK(MPI_Allgatherv(v.data(), n, type, out.data(), sizes.data(), displs.data(), type, c));
  return out;
}

Reducer mpi_reducer(const dist::MpiCommunicator& comm) {
  MPI_Comm c = comm.comm();
  const int world = comm.size();
  Reducer r;
  r.sum = [c](std::vector<double>& v) {
    if (!v.empty()) COCA_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, v.data(), static_cast<int>(v.size()), MPI_DOUBLE, MPI_SUM, c));
  };
  r.concat = [c, world](const std::vector<int64_t>& v) { return all_gather_v(v, MPI_INT64_T, c, world); };
  r.concat_f32 = [c, world](const std::vector<float>& v) { return all_gather_v(v, MPI_FLOAT, c, world); };
  return r;
}

Tensor class_embeddings(const CoCa& model, const std::vector<std::string>& classnames,
                        const std::vector<std::string>& templates, const BpeTokenizer& tok) {
  NoGradGuard no_grad;
  const int L = static_cast<int>(model.config().text.context_length);
  const int64_t C = static_cast<int64_t>(classnames.size()), T = static_cast<int64_t>(templates.size());
  const int64_t E = model.config().embed_dim;
  const std::vector<std::string> prompts = expand_templates(classnames, templates);
  Tensor feats = Tensor::empty({C * T, E});
  const int64_t chunk = 256;
  for (int64_t i = 0; i < C * T; i += chunk) {
    const int64_t n = std::min(chunk, C * T - i);
    std::vector<std::string> part(prompts.begin() + i, prompts.begin() + i + n);
    Tensor tokens = tok.encode_batch(part, L);
    Tensor f = model.text->forward(tokens.to(model.device()), /*trim_padding=*/true).features;  // [n, E] normalised
    feats.slice(0, i, i + n).copy_(f);
  }
  // Mean over templates of the normalised features, renormalised.
  return l2_normalize(mean(feats.reshape({C, T, E}), {1}));
}

ZeroShotResult zeroshot(const CoCa& model, const ZeroShotOptions& o, const Reducer& reduce) {
  NoGradGuard no_grad;
  EvalReader reader(reader_options(model, o.data, o.batch_size, o.rank, o.world));
  std::vector<std::string> classnames = reader.classnames();
  if (!o.classnames_file.empty()) {
    // Names for the shards' labels, in label order: the count must match the shards' classes.
    const std::string path = resolve_bundled_file("classnames", o.classnames_file, "--classnames");
    std::vector<std::string> given = read_classnames(path);
    COCA_CHECK(classnames.empty() || given.size() == classnames.size(), "--classnames ", path, " lists ",
               given.size(), " classes but the shards of ", o.data, " have ", classnames.size());
    classnames = std::move(given);
  }
  COCA_CHECK(!classnames.empty(), "zero-shot data ", o.data, ": no class names (not a classification shard set?)");
  std::string tok_note;
  const std::string tok_path =
      resolve_tokenizer(o.tokenizer, reader.index(), o.data, "zero-shot", model.config().text.vocab_size, &tok_note);
  if (!tok_note.empty() && o.rank == 0) std::printf("zero-shot: %s\n", tok_note.c_str());
  BpeTokenizer tok = BpeTokenizer::load(tok_path);
  COCA_CHECK(tok.vocab_size() == model.config().text.vocab_size, "zero-shot: tokenizer ", tok_path, " has ",
             tok.vocab_size(), " tokens but the model's vocab_size is ", model.config().text.vocab_size);
  const auto templates = read_templates(
      o.templates_file.empty() ? o.templates_file : resolve_bundled_file("templates", o.templates_file, "--templates"));
  Tensor cls = class_embeddings(model, classnames, templates, tok).to(model.device());  // [C, E]
  const int64_t C = static_cast<int64_t>(classnames.size());

  std::vector<double> counts(3 + 2 * C, 0.0);  // top1, top5, n, per-class correct, per-class total
  std::vector<int64_t> errors;                 // (truth, predicted) pairs
  Batch b;
  while (reader.next(b)) {
    COCA_CHECK(b.labels.defined(), "zero-shot data ", o.data, ": shards have no labels");
    Tensor img = model.visual->forward(b.images.to(model.device())).features;  // [B, E]
    auto sim = matmul(img, cls.t()).to_vector<float>();                          // [B, C]
    auto labels = b.labels.to_vector<int32_t>();
    for (size_t i = 0; i < labels.size(); ++i) {
      const int32_t y = labels[i];
      COCA_CHECK(y >= 0 && y < C, "zero-shot data ", o.data, ": label ", y, " outside the ", C, " classes");
      const float* row = sim.data() + i * C;
      int64_t rank_of_truth = 0, best = 0;
      for (int64_t c = 0; c < C; ++c) {
        if (row[c] > row[y] || (row[c] == row[y] && c < y)) ++rank_of_truth;
        if (row[c] > row[best]) best = c;
      }
      counts[0] += rank_of_truth == 0;
      counts[1] += rank_of_truth < 5;
      counts[2] += 1;
      counts[3 + y] += rank_of_truth == 0;
      counts[3 + C + y] += 1;
      if (rank_of_truth != 0) {
        errors.push_back(y);
        errors.push_back(best);
      }
    }
  }
  reduce.sum(counts);
  errors = reduce.concat(errors);
  ZeroShotResult r;
  r.images = static_cast<int64_t>(counts[2]);
  r.classes = C;
  if (r.images > 0) {
    r.top1 = counts[0] / counts[2];
    r.top5 = counts[1] / counts[2];
  }
  double per_class = 0;
  int64_t present = 0;
  for (int64_t c = 0; c < C; ++c)
    if (counts[3 + C + c] > 0) {
      per_class += counts[3 + c] / counts[3 + C + c];
      ++present;
      r.per_class.push_back({classnames[c], static_cast<int64_t>(counts[3 + C + c]), static_cast<int64_t>(counts[3 + c])});
    }
  r.mean_per_class = present ? per_class / present : 0.0;
  std::map<std::pair<int64_t, int64_t>, int64_t> pairs;
  for (size_t i = 0; i + 1 < errors.size(); i += 2) ++pairs[{errors[i], errors[i + 1]}];
  std::vector<std::pair<int64_t, std::pair<int64_t, int64_t>>> ranked;
  for (auto& [k, v] : pairs) ranked.push_back({v, k});
  std::sort(ranked.begin(), ranked.end(), [](auto& a, auto& b) { return a.first != b.first ? a.first > b.first : a.second < b.second; });
  for (size_t i = 0; i < ranked.size() && static_cast<int>(i) < o.top_confused; ++i)
    r.confused.push_back({classnames[ranked[i].second.first], classnames[ranked[i].second.second], ranked[i].first});
  return r;
}

}  // namespace coca::eval
