// Crafted PyTorch checkpoints: every defensive limit of the zip, pickle and storage readers
// refuses its file with one line naming the file and the limit, before allocating what the
// file asks for. The files are written here, byte by byte (torch is not needed): a stored or
// deflated zip around a hand-assembled protocol-2 pickle, as torch.save lays them out.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "coca/model/coca.h"
#include "coca/model/weights.h"
#include "coca/tensor/torch_archive.h"
#include "common/test_util.h"
#include "tensor/crafted_torch.h"
#include "tensor/pickle.h"
#include "tensor/zip_reader.h"

using namespace coca;
using coca::testing::error_of;
using namespace coca::crafted;
namespace fs = std::filesystem;

namespace {

const std::string kGolden = COCA_GOLDEN_DIR;

class Crafted : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("coca_hostile_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& bytes) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }
  // The message of reading `path` as a weight file, checked to be one line naming the file.
  std::string refusal(const std::string& path, const nn::Module* model = nullptr) {
    const std::string msg = error_of([&] { read_weight_file(path, model); });
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    return msg;
  }
  fs::path dir_;
};

}  // namespace

// Two records of one storage key, the second claiming 64 elements where the blob holds 4: the
// first record's size check used to pass the second, and the copy read past the 16-byte blob.
TEST_F(Crafted, StorageKeyDeclaredTwiceDifferentlyIsRefused) {
  for (const char* second_type : {"FloatStorage", "DoubleStorage"}) {
    const bool wider = std::string(second_type) == "DoubleStorage";
    const std::vector<TensorRecord> t = {{"a", "0", "FloatStorage", 4, 0, {4}, {1}},
                                         {"b", "0", second_type, wider ? 4 : 64, 0, {wider ? 4 : 64}, {1}}};
    const std::string path = write("dup_key.bin", zip_archive({{"archive/data.pkl", state_dict_pickle(t)},
                                                              {"archive/data/0", floats(4)}}));
    const std::string msg = refusal(path);
    EXPECT_NE(msg.find("storage 0 is declared twice, differently"), std::string::npos) << msg;
  }
}

// The same key declared the same way is a shared storage, as torch.save writes for views.
TEST_F(Crafted, SharedStorageDeclaredAlikeStillLoads) {
  const std::vector<TensorRecord> t = {{"a", "0", "FloatStorage", 8, 0, {4}, {1}},
                                       {"b", "0", "FloatStorage", 8, 4, {2, 2}, {1, 2}}};
  const std::string path = write("shared.bin", zip_archive({{"archive/data.pkl", state_dict_pickle(t)},
                                                           {"archive/data/0", floats(8, 2.0f)}}));
  const NamedTensors got = read_weight_file(path);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1].second.shape(), (Shape{2, 2}));
  EXPECT_EQ(got[1].second.to_double_vector(), std::vector<double>(4, 2.0));
}

// Memo get/put and APPEND built a chain of 2 million lists while each recorded depth stayed at
// 2; destroying it recursed 2 million deep (a segmentation fault, also on the error path).
TEST(CraftedPickle, AppendingToAListAlreadyInsideAnotherIsRefused) {
  std::string p = "\x80\x02]r";
  put_le(p, 0, 4);
  const int64_t levels = 2'000'000;
  for (int64_t i = 0; i < levels; ++i) {
    p += "j";
    put_le(p, static_cast<uint64_t>(i), 4);  // the deepest list so far
    p += "]r";
    put_le(p, static_cast<uint64_t>(i + 1), 4);  // a new one, remembered
    p += "a0";                                    // appended into the deepest, which is popped
  }
  p += ".";
  const std::string msg = error_of([&] { unpickle(std::vector<char>(p.begin(), p.end()), "t.pt: "); });
  EXPECT_NE(msg.find("t.pt: corrupt pickle: APPEND(S) at offset"), std::string::npos) << msg;
  EXPECT_NE(msg.find("changes a list that is already inside another value"), std::string::npos) << msg;
}

TEST(CraftedPickle, ListInsideItselfIsRefused) {
  const std::string p("\x80\x02]q\x00h\x00" "a.", 9);
  const std::string msg = error_of([&] { unpickle(std::vector<char>(p.begin(), p.end()), "t.pt: "); });
  EXPECT_NE(msg.find("puts a list inside itself"), std::string::npos) << msg;
  // A dict as its own value, through SETITEM.
  const std::string d("\x80\x02}q\x00K\x01h\x00s.", 11);
  const std::string dmsg = error_of([&] { unpickle(std::vector<char>(d.begin(), d.end()), "t.pt: "); });
  EXPECT_NE(dmsg.find("puts a dict inside itself"), std::string::npos) << dmsg;
}

TEST(CraftedPickle, NestingDepthAndValueCountAreBounded) {
  std::string deep = "\x80\x02)";
  for (int i = 0; i < kMaxPickleDepth; ++i) deep += "\x85";  // TUPLE1: one more level each
  deep += ".";
  const std::string msg = error_of([&] { unpickle(std::vector<char>(deep.begin(), deep.end()), "t.pt: "); });
  EXPECT_NE(msg.find("nests deeper than 1000 (limit)"), std::string::npos) << msg;
  // One level less is fine, and its destruction is iterative.
  const std::string ok = deep.substr(0, deep.size() - 2) + ".";
  EXPECT_EQ(unpickle(std::vector<char>(ok.begin(), ok.end()), "t.pt: ")->depth, kMaxPickleDepth);

  std::string many = "\x80\x02";
  many.append(kMaxPickleValues + 1, 'N');
  const std::string count = error_of([&] { unpickle(std::vector<char>(many.begin(), many.end()), "t.pt: "); });
  EXPECT_NE(count.find("pickle makes more than 1048576 values (limit)"), std::string::npos) << count;
}

// Two directory records pointing at one entry's bytes: a small file that inflates many times.
TEST_F(Crafted, OverlappingZipEntriesAreRefused) {
  const std::vector<TensorRecord> t = {{"a", "0", "FloatStorage", 4, 0, {4}, {1}},
                                       {"b", "1", "FloatStorage", 4, 0, {4}, {1}}};
  std::vector<ZipItem> items = {{"archive/data.pkl", state_dict_pickle(t)}, {"archive/data/0", floats(4)}};
  items.push_back({"archive/data/1", "", false, 1});
  const std::string msg = refusal(write("overlap.bin", zip_archive(items)));
  EXPECT_NE(msg.find("entries archive/data/0 and archive/data/1 overlap"), std::string::npos) << msg;
}

// 256 MiB of zeros deflate to about 250 KB: more than 32 x the file + 64 MiB, refused before
// the bytes are inflated.
TEST_F(Crafted, DeflateBombPastTheBudgetIsRefused) {
  const int64_t n = 64 << 20;
  const std::vector<TensorRecord> t = {{"a", "0", "FloatStorage", n, 0, {n}, {1}}};
  const std::string path = write("bomb.bin", zip_archive({{"archive/data.pkl", state_dict_pickle(t)},
                                                         {"archive/data/0", std::string(n * 4, '\0'), true}}));
  ASSERT_LT(fs::file_size(path), 1u << 20);
  const std::string msg = refusal(path);
  EXPECT_NE(msg.find("its tensors need 268435456 bytes of storage"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(32 x the file's size + 64 MiB)"), std::string::npos) << msg;
  // The zip reader's own budget, for what the tensor check does not see (any entry read).
  ZipReader zip(path);
  zip.set_budget(1 << 20, "a test's 1 MiB");
  const std::string zmsg = error_of([&] { zip.read(*zip.find("archive/data/0")); });
  EXPECT_NE(zmsg.find("entry archive/data/0 (268435456 bytes) would bring what this archive inflates to 268435456 "
                      "bytes, over its budget of 1048576 (a test's 1 MiB)"),
            std::string::npos)
      << zmsg;
}

// A stride-0 view 1024 times its 1 MiB storage asks for 1 GiB: over the budget.
TEST_F(Crafted, ExpandedViewPastTheBudgetIsRefused) {
  const int64_t n = 256 << 10;
  const std::vector<TensorRecord> t = {{"a", "0", "FloatStorage", n, 0, {1024, n}, {0, 1}}};
  const std::string path = write("expand.bin", zip_archive({{"archive/data.pkl", state_dict_pickle(t)},
                                                           {"archive/data/0", floats(n)}}));
  const std::string msg = refusal(path);
  EXPECT_NE(msg.find("and 1073741824 bytes as tensors, over the limit of"), std::string::npos) << msg;
}

TEST_F(Crafted, OversizedDataPklIsRefusedBeforeItIsRead) {
  std::string p = "\x80\x02";
  p.append(kMaxPickleBytes, '\x80');  // inflated only if the size check failed
  const std::string path = write("big_pkl.bin", zip_archive({{"archive/data.pkl", p, true}}));
  const std::string msg = refusal(path);
  EXPECT_NE(msg.find("data.pkl is 67108866 bytes, over the limit of 67108864"), std::string::npos) << msg;
}

// With a model, names and shapes are checked before any storage is read: this file's storage is
// missing, but what it is told is that a tensor is wrongly shaped.
TEST_F(Crafted, NamesAndShapesAreCheckedBeforeAnyTensorIsRead) {
  const CocaConfig cfg = CocaConfig::from_file(kGolden + "/micro.json");
  CoCa model(cfg);
  std::vector<TensorRecord> t;
  int k = 0;
  for (auto& [name, p] : model.named_parameters()) {
    const Shape size = name == "logit_scale" ? Shape{2} : p.shape();
    Shape stride(size.size(), 1);
    for (int64_t d = static_cast<int64_t>(size.size()) - 2; d >= 0; --d) stride[d] = stride[d + 1] * size[d + 1];
    t.push_back({name, std::to_string(k++), "FloatStorage", shape_numel(size), 0, size, stride});
  }
  const std::string path = write("shapes.bin", zip_archive({{"archive/data.pkl", state_dict_pickle(t)}}));
  const std::string msg = refusal(path, &model);
  EXPECT_NE(msg.find("do not match the model config: wrongly shaped logit_scale (file [2], model [])"),
            std::string::npos)
      << msg;
  // The model bounds the size too: a storage far larger than every parameter together.
  t = {{"logit_scale", "0", "FloatStorage", int64_t{1} << 26, 0, {}, {}}};
  for (auto& [name, p] : model.named_parameters())
    if (name != "logit_scale") t.push_back({name, "0", "FloatStorage", int64_t{1} << 26, 0, p.shape(), {}});
  for (TensorRecord& r : t) r.stride.assign(r.size.size(), 0);
  const std::string big = write("big.bin", zip_archive({{"archive/data.pkl", state_dict_pickle(t)}}));
  const std::string bmsg = refusal(big, &model);
  EXPECT_NE(bmsg.find("8 bytes for each value the model holds"), std::string::npos) << bmsg;
}
